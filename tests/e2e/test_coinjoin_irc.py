"""A complete coinjoin from Electrum: a taker and three makers (real Electrum wallets), each with
its own jmdaemon, over a real IRC server on the regtest stack. Balances to the satoshi."""
from __future__ import annotations

import pytest

from electrum_joinmarket.commitments import CommitmentStore
from tests.e2e.conftest import confirmed_balance, new_wallet
from tests.e2e.jmnet import quick_config

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
    taker_w = new_wallet(electrum_node, bitcoind, [30_000_000, 8_000_000], mine=5)
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
    taker_w = new_wallet(electrum_node, bitcoind, [9_000_000, 4_000_000], mine=5)
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
