"""The wallet session's watch over coinjoins our taker signed and gave out in a run that then
reported failure (electrum_joinmarket/taker/signed.py), on real Electrum wallets: one the wallet
already has when the session opens is recorded in the history at once; one whose input was
spent by another confirmed transaction is dropped (it can never go out). The end-to-end case (a
maker withholds our signed coinjoin, broadcasts it later) is in tests/e2e/test_malicious_makers.py."""
from __future__ import annotations

import pytest

from electrum_joinmarket.runner import HISTORY_KEY
from electrum_joinmarket.taker import signed

pytestmark = pytest.mark.stack

SUMMARY = {"cj_amount": 1_000_000, "destination": "bcrt1qexample", "makers": ["J5maker"],
           "maker_fees": {"J5maker": 100}, "miner_fee": 500, "taker_miner_fee": 200,
           "total_cost": 300, "sweep": False}


def test_low_signed_tx_seen_before_the_session_opened_is_recorded(electrum_node, bitcoind,
                                                                   make_wallet, jm_plugin):
    w = make_wallet(fund=[2_000_000, 3_000_000])
    # "our signed coinjoin": a transaction that went out while Electrum was closed (here: one
    # spending the first coin), recorded by a run that then failed
    out = electrum_node.pay(w, w.get_unused_address(), 500_000)
    electrum_node.wait_tx(w, out.txid())
    jm_plugin.drop_session(w)
    storage = jm_plugin.get_storage(w)
    signed.remember(storage, w.save_db, out.txid(), [i.prevout.to_str() for i in out.inputs()],
                    SUMMARY)
    electrum_node.run(_on_loop(lambda: signed.settle(storage, w.save_db, out.txid(),
                                                     recorded=False)))     # its run failed
    # a second record that can never go out: its input is spent by another, confirmed tx
    other = electrum_node.pay(w, w.get_unused_address(), 400_000)
    spent = other.inputs()[0].prevout.to_str()
    bitcoind.mine(1)
    electrum_node.wait_tx(w, other.txid(), confirmations=1)
    signed.remember(storage, w.save_db, "ab" * 32, [spent], SUMMARY)
    electrum_node.run(_on_loop(lambda: signed.settle(storage, w.save_db, "ab" * 32,
                                                     recorded=False)))
    assert set(signed.pending(storage)) == {out.txid(), "ab" * 32}
    history_before = len(storage.get(HISTORY_KEY, []))

    session = jm_plugin.session_for(w)                     # the watch starts with the session
    assert session.signed_watch.found == [out.txid()]
    assert signed.pending(storage) == {}
    history = storage.get(HISTORY_KEY, [])
    assert len(history) == history_before + 1
    entry = history[-1]
    assert entry["txid"] == out.txid() and entry["status"] == "success" and entry["late"]
    assert {k: entry[k] for k in SUMMARY} == SUMMARY


def test_low_signed_tx_of_a_running_round_is_left_to_its_run(electrum_node, bitcoind, make_wallet,
                                                            jm_plugin):
    """While the taker run that gave out a signed coinjoin is still going, the wallet seeing it
    is that run's own success (it waits for exactly this): the watch must not record it as a
    late coinjoin too. A run that succeeded drops the record; one that failed hands it to the
    watch, which records it at once if the wallet already has it."""
    w = make_wallet(fund=[2_000_000, 3_000_000])
    session = jm_plugin.session_for(w)
    storage = session.storage
    history_before = list(storage.get(HISTORY_KEY, []))

    # a run that succeeds: its transaction is seen while the run is still going
    ok = electrum_node.pay(w, w.get_unused_address(), 600_000)
    signed.remember(storage, w.save_db, ok.txid(), [i.prevout.to_str() for i in ok.inputs()],
                    SUMMARY)
    electrum_node.wait_tx(w, ok.txid())
    assert session.signed_watch.check_now() == []            # (the event may have come before)
    electrum_node.run(_on_loop(lambda: session.signed_watch.on_event_adb_added_tx(
        w.adb, ok.txid())))
    assert storage.get(HISTORY_KEY, []) == history_before
    assert set(signed.pending(storage)) == {ok.txid()} and signed.in_flight(ok.txid())
    electrum_node.run(_on_loop(lambda: signed.settle(storage, w.save_db, ok.txid(),
                                                     recorded=True)))
    assert signed.pending(storage) == {} and not signed.in_flight(ok.txid())
    assert storage.get(HISTORY_KEY, []) == history_before
    assert session.signed_watch.found == []

    # a run that reported failure although the wallet already had its transaction
    late = electrum_node.pay(w, w.get_unused_address(), 700_000)
    signed.remember(storage, w.save_db, late.txid(),
                    [i.prevout.to_str() for i in late.inputs()], SUMMARY)
    electrum_node.wait_tx(w, late.txid())
    assert session.signed_watch.check_now() == []
    electrum_node.run(_on_loop(lambda: signed.settle(storage, w.save_db, late.txid(),
                                                     recorded=False)))
    entry = electrum_node.wait(
        lambda: next((e for e in storage.get(HISTORY_KEY, []) if e.get("txid") == late.txid()),
                     None), 10, "the late coinjoin in the history")
    assert session.signed_watch.found == [late.txid()]
    assert entry["status"] == "success" and entry["late"] is True
    assert {k: entry[k] for k in SUMMARY} == SUMMARY
    assert len(storage.get(HISTORY_KEY, [])) == len(history_before) + 1
    assert signed.pending(storage) == {}


async def _on_loop(fn):
    """Run ``fn`` on Electrum's event loop (as the taker and Electrum's events do)."""
    return fn()
