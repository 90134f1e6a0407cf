"""A complete coinjoin from Electrum: a taker and three makers (real Electrum wallets), each with
its own jmdaemon, over a real IRC server on the regtest stack. Balances to the satoshi."""
from __future__ import annotations

import pytest

from devstack.jmnet import quick_config
from devstack.procs import wait_until
from devstack.wallets import SignSpy, confirmed_balance, new_wallet
from electrum_joinmarket.protocol.commitments import CommitmentStore

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def _balances(net):
    return {p.maker.nick: confirmed_balance(p.wallet) for p in net.makers}


def _confirm(net, txid, wallets):
    net.bitcoind.mine(1)
    for w in wallets:
        net.electrum_node.wait_tx(w, txid, confirmations=1)


def _run(net, taker_wallet, config, password=None):
    store = CommitmentStore({}, on_change=None)
    events = []
    taker = net.taker(taker_wallet, store, config, password=password, progress=events.append)
    outcome = net.run_taker(taker)
    return outcome, events, store


def test_coinjoin_three_makers_irc_balances(irc_net, electrum_node, bitcoind):
    net = irc_net
    taker_w = new_wallet(electrum_node, bitcoind, [30_000_000, 8_000_000], confirmations=6)
    dest_w = new_wallet(electrum_node, bitcoind)
    before_makers, before_taker = _balances(net), confirmed_balance(taker_w)
    cj = 12_345_678
    outcome, events, store = _run(net, taker_w, quick_config(cj, dest_w.get_receiving_address()))
    assert outcome.status == "success", (outcome.message, outcome.ignored_makers)
    assert len(outcome.makers) == 3 and outcome.cj_amount == cj
    _confirm(net, outcome.txid, [taker_w, dest_w] + [p.wallet for p in net.makers])
    assert confirmed_balance(dest_w) == cj
    # the taker pays the makers' fees and its share of the miner fee, nothing else
    assert before_taker - confirmed_balance(taker_w) == cj + outcome.total_cost
    assert outcome.total_cost == sum(outcome.maker_fees.values()) + outcome.taker_miner_fee
    after = _balances(net)
    for nick, fee in outcome.maker_fees.items():      # offers have txfee 0: makers earn the fee
        assert after[nick] - before_makers[nick] == fee
    expected_fees = {p.maker.nick: round(cj * float(p.maker.settings.cjfee_r)) for p in net.makers}
    assert outcome.maker_fees == expected_fees
    raw = bitcoind.rpc("getrawtransaction", outcome.txid, True)
    assert sum(1 for o in raw["vout"] if round(o["value"] * 10**8) == cj) == 4
    assert len(store.used()) == 1                     # one commitment, recorded before !fill
    stages = [e["stage"] for e in events]
    for stage in ("connect", "orderbook", "chosen", "fill", "ioauth", "tx", "sigs", "broadcast",
                  "done"):
        assert stage in stages
    assert not any(taker_w.is_frozen_coin(c) for c in taker_w.get_utxos())


def test_sweep_coinjoin_irc(irc_net, electrum_node, bitcoind):
    net = irc_net
    taker_w = new_wallet(electrum_node, bitcoind, [9_000_000, 4_000_000], confirmations=6)
    dest_w = new_wallet(electrum_node, bitcoind)
    before_makers, before_taker = _balances(net), confirmed_balance(taker_w)
    outcome, _, _ = _run(net, taker_w, quick_config(0, dest_w.get_receiving_address()))
    assert outcome.status == "success", (outcome.message, outcome.ignored_makers)
    _confirm(net, outcome.txid, [taker_w, dest_w] + [p.wallet for p in net.makers])
    assert confirmed_balance(taker_w) == 0                       # everything swept
    assert confirmed_balance(dest_w) == outcome.cj_amount
    assert before_taker == outcome.cj_amount + outcome.total_cost
    after = _balances(net)
    for nick, fee in outcome.maker_fees.items():
        assert after[nick] - before_makers[nick] == fee


def test_not_self_broadcast_a_maker_pushes(irc_net, electrum_node, bitcoind):
    """Broadcast policy ``not-self``: a maker broadcasts on our ``!push`` (it pushes only a
    transaction it signed), the wallet sees the coinjoin."""
    net = irc_net
    taker_w = new_wallet(electrum_node, bitcoind, [12_000_000], confirmations=6)
    dest = new_wallet(electrum_node, bitcoind)
    outcome, events, _ = _run(net, taker_w, quick_config(4_000_000, dest.get_receiving_address(),
                                                         broadcast="not-self"))
    assert outcome.status == "success", (outcome.message, outcome.ignored_makers)
    pushes = [e for e in events if e["stage"] == "broadcast"]
    assert pushes and "asking maker" in pushes[0]["message"]
    assert sum(p.maker.broadcasts for p in net.makers) == 1
    _confirm(net, outcome.txid, [dest])
    assert confirmed_balance(dest) == 4_000_000


@pytest.mark.parametrize("stage", ["orderbook", "fill", "tx"])
def test_f5_cancel_at_each_stage_leaves_clean_state(irc_net, electrum_node, bitcoind, stage):
    """F5: the user cancels while the taker waits for the orderbook, for the makers' !ioauth,
    or for their !sig: the run ends "cancelled", no coin stays frozen, a commitment that was
    sent stays recorded as used, and nothing is broadcast."""
    import asyncio

    from electrum_joinmarket.taker.taker import Taker
    net = irc_net
    taker_w = new_wallet(electrum_node, bitcoind, [9_000_000], confirmations=6)
    dest = new_wallet(electrum_node, bitcoind)
    store = CommitmentStore({}, on_change=None)
    seen = []
    # the orderbook stage must last long enough to be caught; the others need no long waits
    cfg = quick_config(3_000_000, dest.get_receiving_address(),
                       **({"orderbook_min_wait": 3.0} if stage == "orderbook" else {}))
    taker: Taker = net.taker(taker_w, store, cfg, progress=seen.append)

    async def run_and_cancel():
        task = asyncio.ensure_future(taker.run())
        await wait_until(lambda: any(e["stage"] == stage for e in seen), 90, f"stage {stage}",
                         interval=0.01)
        task.cancel()
        return await task
    outcome = electrum_node.run(run_and_cancel(), timeout=120)
    assert outcome.status == "cancelled" and outcome.txid is None
    assert not any(taker_w.is_frozen_coin(c) for c in taker_w.get_utxos())
    assert len(store.used()) == (0 if stage == "orderbook" else 1)
    assert confirmed_balance(taker_w) == 9_000_000
    assert taker_w.get_balance()[1] == 0                        # nothing in the mempool


def test_declined_confirmation_signs_nothing(irc_net, electrum_node, bitcoind, monkeypatch):
    """The user sees the exact breakdown before signing and says no: nothing is signed, nothing
    frozen, the commitment stays used; the breakdown matched what the tx would have paid."""
    net = irc_net
    taker_w = new_wallet(electrum_node, bitcoind, [8_000_000], confirmations=6)
    signed = SignSpy(taker_w, monkeypatch).calls
    shown = []

    async def decline(breakdown):
        shown.append(breakdown)
        return False
    store = CommitmentStore({}, on_change=None)
    taker = net.taker(taker_w, store, quick_config(2_000_000, taker_w.get_unused_address()))
    taker.confirm = decline
    outcome = net.run_taker(taker)
    assert outcome.status == "failed" and "declined" in outcome.message
    assert signed == [] and outcome.txid is None
    (b,) = shown
    assert b["cj_amount"] == 2_000_000 and len(b["maker_fees"]) == 3
    assert b["total_cost"] == sum(b["maker_fees"].values()) + b["taker_miner_fee"]
    assert not any(taker_w.is_frozen_coin(c) for c in taker_w.get_utxos())
    assert len(store.used()) == 1
