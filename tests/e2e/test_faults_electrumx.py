"""F2: ElectrumX restarts while the taker checks the makers' inputs (docs/testing.md). The
taker never signs what it could not verify: makers the server cannot check are neither used
nor blamed, the round ends cleanly (nothing frozen, the commitment kept as used), and once the
server is back a later round checks the makers for real and completes the coinjoin. Real
stack: bitcoind, ElectrumX (stopped and started again on its port and database), Electrum
wallets, three Electrum makers with their own jmdaemons on ngircd."""
from __future__ import annotations

import asyncio

import pytest

from devstack.jmnet import quick_config
from devstack.wallets import SignSpy, confirmed_balance, new_wallet
from electrum_joinmarket.errors import Failure
from electrum_joinmarket.protocol.commitments import CommitmentStore
from electrum_joinmarket.stages import OutcomeStatus, TakerStage

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


class _Fault:
    """Stops ElectrumX the moment every maker's ``!ioauth`` reached the taker (its chain checks
    start then) and, if ``restart_on`` is given, starts it again when the taker reports that
    stage (the checks of that round are over)."""

    def __init__(self, electrumx, taker, restart_on=None):
        self.ex, self.restart_on = electrumx, restart_on
        self.events: list[dict] = []
        self.stopped = self.restarted = False
        real = taker.on_JMFillResponse

        def on_fill(success, ioauth_data):
            if self.stopped or not success:
                return real(success, ioauth_data)
            self.stopped = True
            stop = asyncio.get_running_loop().run_in_executor(None, self.ex.stop)
            stop.add_done_callback(lambda _f: real(success, ioauth_data))
        taker.on_JMFillResponse = on_fill          # the daemon client looks it up per event

    def progress(self, event: dict) -> None:
        self.events.append(event)
        if self.stopped and not self.restarted and event["stage"] == self.restart_on:
            self.restarted = True
            self.ex.start()          # blocks the loop until e-x serves the tip: an outage

    def stages(self) -> list:
        return [e["stage"] for e in self.events]


def _taker(net, wallet, store, cfg, electrumx, restart_on=None):
    holder: dict = {}
    taker = net.taker(wallet, store, cfg, progress=lambda e: holder["f"].progress(e))
    # what is tested is what the taker does with no answer, not how long it waits for one (30 s
    # by default): the server is down, so each round's checks would only wait out the default
    taker.chain.request_timeout = 10.0
    holder["f"] = fault = _Fault(electrumx, taker, restart_on)
    return taker, fault


def test_f2_electrumx_restart_during_maker_checks(irc_net, electrum_node, bitcoind, electrumx,
                                                 monkeypatch):
    net = irc_net
    taker_w = new_wallet(electrum_node, bitcoind, [25_000_000, 5_000_000], confirmations=6)
    dest = new_wallet(electrum_node, bitcoind)
    signed = SignSpy(taker_w, monkeypatch).calls
    makers = {p.maker.nick for p in net.makers}
    try:
        # 1. the server is down for the rest of a one-round run: no signature, a clean end
        store = CommitmentStore({}, on_change=None)
        cfg = quick_config(7_000_000, dest.get_receiving_address(), n=3, max_rounds=1)
        taker, fault = _taker(net, taker_w, store, cfg, electrumx)
        outcome = net.run_taker(taker)
        assert fault.stopped and electrumx.proc.poll() is not None
        assert outcome.status == OutcomeStatus.FAILED and outcome.failure == Failure.CHAIN, \
            outcome.message
        assert "could not check 3" in outcome.message and "nothing was signed" in outcome.message
        unchecked = {e["maker"] for e in fault.events if e["stage"] == TakerStage.MAKER_UNCHECKED}
        assert unchecked == makers
        assert TakerStage.MAKER_REJECTED not in fault.stages()
        assert not set(outcome.ignored_makers) & makers        # the server's fault, not theirs
        assert signed == [] and TakerStage.TX not in fault.stages()  # no !tx, no signature
        assert not any(taker_w.is_frozen_coin(c) for c in taker_w.get_utxos())
        assert len(store.used()) == 1                           # the commitment sent is kept
        electrumx.start()
        electrum_node.wait(electrum_node.network.is_connected, 30, "Electrum to reconnect")
        electrum_node.wait_synced(taker_w)

        # 2. it restarts during the checks (up again once they failed): the next round waits
        # for Electrum to reconnect, checks the makers on the restarted server and completes;
        # only that transaction is signed
        before = confirmed_balance(taker_w)         # the same wallet: its commitments store
        cfg = quick_config(7_000_000, dest.get_receiving_address(), n=3, max_rounds=3)
        taker, fault = _taker(net, taker_w, store, cfg, electrumx, restart_on=TakerStage.IOAUTH)
        outcome = net.run_taker(taker)
        assert fault.stopped and fault.restarted
        assert outcome.status == OutcomeStatus.SUCCESS, (outcome.message, outcome.ignored_makers)
        assert outcome.rounds == 2 and set(outcome.makers) == makers
        stages = fault.stages()
        first_retry = stages.index(TakerStage.RETRY)
        assert stages[:first_retry].count(TakerStage.MAKER_UNCHECKED) == 3
        assert TakerStage.TX not in stages[:first_retry]
        ioauths = [e for e in fault.events if e["stage"] == TakerStage.IOAUTH]
        assert [e["makers_answered"] for e in ioauths] == [0, 3]
        assert len(signed) == 1 and signed[0].txid() == outcome.txid
        assert not outcome.ignored_makers
        assert not any(taker_w.is_frozen_coin(c) for c in taker_w.get_utxos())
        assert len(store.used()) == 3                           # every round's commitment
        bitcoind.mine(1)
        electrum_node.wait_tx(taker_w, outcome.txid, confirmations=1)
        assert before - confirmed_balance(taker_w) == 7_000_000 + outcome.total_cost
    finally:
        if electrumx.proc.poll() is not None:
            electrumx.start()


def test_f2_a_round_waits_for_the_server(irc_net, electrum_node, bitcoind, electrumx):
    """ElectrumX is down when a coinjoin starts and comes back 20 s later: the round waits for
    Electrum to reconnect before it sends a commitment or asks a maker anything, then completes
    in one round with one commitment; no maker is blamed for our server's outage."""
    import threading
    net = irc_net
    taker_w = new_wallet(electrum_node, bitcoind, [25_000_000], confirmations=6)
    dest = new_wallet(electrum_node, bitcoind)
    store = CommitmentStore({}, on_change=None)
    events: list = []
    cfg = quick_config(5_000_000, dest.get_receiving_address(), n=3)
    taker = net.taker(taker_w, store, cfg, progress=events.append)
    electrumx.stop()
    electrum_node.wait(lambda: not electrum_node.network.is_connected(), 30, "Electrum offline")
    back = threading.Timer(20, electrumx.start)
    back.start()
    try:
        outcome = net.run_taker(taker)
    finally:
        back.join()
        if electrumx.proc.poll() is not None:
            electrumx.start()
    assert outcome.status == OutcomeStatus.SUCCESS, (outcome.message, outcome.ignored_makers)
    assert outcome.rounds == 1 and len(store.used()) == 1 and not outcome.ignored_makers
    fill = next(e["time"] for e in events if e["stage"] == TakerStage.FILL)
    orderbook = next(e["time"] for e in events if e["stage"] == TakerStage.ORDERBOOK)
    assert fill - orderbook >= 15                    # the round waited for the server
    assert not any(taker_w.is_frozen_coin(c) for c in taker_w.get_utxos())
