"""F7: Electrum is killed (SIGKILL) while a schedule runs — between two steps, and after the
``!tx`` went to the makers and their signatures came back but before the broadcast — and on
restart the schedule resumes by itself: no step runs twice, no double spend, no commitment used
twice, nothing of the record lost.

Electrum here is a separate process (tests/e2e/schedule_child.py: Electrum 4.8 on regtest with
the plugin loaded as Electrum loads it, its hooks, one wallet file), killed with SIGKILL: no
``finally`` block, no ``close_wallet``, no ``save_db`` runs after the kill; what the next process
finds is exactly what was on disk.  The makers (our Electrum makers over jmdaemon and ngircd)
live in the test process and keep running, as the network would."""
from __future__ import annotations

import json
import os
import pathlib
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from devstack.bitcoind import RPCError
from devstack.daemons import start_daemon
from devstack.ircd import irc_config

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Child:
    """One Electrum process; its JSON lines arrive on a queue."""

    def __init__(self, tmp, n, args):
        self.log = open(tmp / f"child{n}.stderr", "wb")
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.e2e.schedule_child"] + args,
                                     stdout=subprocess.PIPE, stderr=self.log, cwd=str(ROOT),
                                     env=env, text=True)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                pass

    def wait_for(self, pred, timeout, on_idle=None, what=""):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ev = self.lines.get(timeout=1.0)
            except queue.Empty:
                if self.proc.poll() is not None:
                    # its last lines may still be on their way through the reader thread
                    self.reader.join(10)
                    if not self.lines.empty():
                        continue
                    raise AssertionError(f"Electrum exited ({self.proc.returncode}) waiting for "
                                         f"{what}; last events {self.seen[-5:]}") from None
                if on_idle is not None:     # where the schedule is: its last message
                    on_idle(next((e for e in reversed(self.seen) if e.get("message")), {}))
                continue
            self.seen.append(ev)
            if pred(ev):
                return ev
        raise AssertionError(f"timeout waiting for {what}; last events {self.seen[-8:]}")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()


def mine_when_waiting(bitcoind):
    """One block per new "waiting for" message of the schedule (again if it stays 10 s): the
    chain moves only as far as the schedule asks, so a kill lands where the test wants it."""
    state = {"msg": None, "t": 0.0}

    def idle(last):
        msg = str(last.get("message", ""))
        if "waiting for" not in msg:
            return
        if msg != state["msg"] or time.monotonic() - state["t"] > 10:
            state["msg"], state["t"] = msg, time.monotonic()
            bitcoind.mine(1)
    return idle


def test_f7_killed_between_steps_and_before_broadcast(electrum_node, bitcoind, electrumx, irc_net,
                                                      ircd, tmp_path):
    from electrum.wallet import create_new_wallet
    node = electrum_node
    # the wallet file, made and funded here, then used only by the child processes
    wallet_path = tmp_path / "f7-wallet"
    made = create_new_wallet(path=str(wallet_path), config=node.config, password=None)
    w0 = made["wallet"]
    addrs = w0.get_receiving_addresses()
    for a, sats in zip(addrs, (20_000_000, 6_000_000), strict=False):
        bitcoind.fund(a, sats, confirm=False)
    bitcoind.mine(6)
    dest = node.create_wallet("f7-dest")
    dest_addr = dest.get_receiving_addresses()[0]
    steps = [{"depth": 0, "amount": 12_000_000, "counterparties": 2, "destination": "INTERNAL",
              "wait_blocks": 2},
             {"depth": 1, "amount": "0.5", "counterparties": 2, "destination": "INTERNAL"},
             {"depth": 1, "amount": 0, "counterparties": 2, "destination": dest_addr}]
    daemon = start_daemon(tmp_path, "f7-taker-daemon")
    base = ["--datadir", str(tmp_path / "electrum-child"), "--server", electrumx.server_string,
            "--wallet", str(wallet_path), "--daemon-port", str(daemon.port),
            "--daemon-datadir", daemon.extra["datadir"],
            "--channels", json.dumps(irc_config(ircd))]
    idle = mine_when_waiting(bitcoind)
    children = []
    try:
        # --- 1st Electrum: creates and starts the schedule; killed between steps 1 and 2
        c1 = Child(tmp_path, 1, base + ["--create", json.dumps(steps)])
        children.append(c1)
        c1.wait_for(lambda e: e.get("event") == "READY", 120, what="READY")
        c1.wait_for(lambda e: "step 2: waiting for block" in str(e.get("message")), 300,
                    on_idle=idle, what="step 1 done, waiting 2 blocks")
        c1.kill()
        # --- 2nd Electrum: resumes by itself; killed holding step 3's signed coinjoin
        c2 = Child(tmp_path, 2, base + ["--hold-before-broadcast", "2"])
        children.append(c2)
        ready = c2.wait_for(lambda e: e.get("event") == "READY", 120, what="READY")
        assert ready["running"] is not None                      # resumed on load
        hold = c2.wait_for(lambda e: e.get("event") == "HOLD", 400, on_idle=idle,
                           what="step 3 signed, before its broadcast")
        held_txid = hold["txid"]
        time.sleep(0.5)
        c2.kill()
        with pytest.raises(RPCError):
            bitcoind.rpc("getrawtransaction", held_txid, True)    # never reached the network
        # --- 3rd Electrum: resumes, finds step 3 never went out, runs it again, finishes
        c3 = Child(tmp_path, 3, base)
        children.append(c3)
        c3.wait_for(lambda e: e.get("event") == "READY", 120, what="READY")
        fin = c3.wait_for(lambda e: e.get("event") == "FINISHED", 400, on_idle=idle,
                          what="the schedule to finish")
        assert fin["status"] == "done", c3.seen[-6:]
        c3.proc.wait(30)
    finally:
        for c in children:
            if c.proc.poll() is None:
                c.kill()
        daemon.stop()

    # --- the record, read back by this process from the wallet file
    if node.config.get("plugins.joinmarket.enabled") is None:
        node.config.set_key("plugins.joinmarket.enabled", False)
    wallet = node.load_wallet(wallet_path)
    try:
        from electrum_joinmarket.depths.record import DepthRecord
        from electrum_joinmarket.maker.maker import plugin_storage
        from electrum_joinmarket.protocol.commitments import CommitmentStore
        from electrum_joinmarket.schedule.store import ScheduleStore
        storage = plugin_storage(wallet)
        [sched] = ScheduleStore(storage, None).all()
        s0, s1, s2 = sched.steps
        assert sched.status == "done" and all(s.status == "done" for s in sched.steps)
        assert (s0.attempts, s0.cj_amount) == (1, 12_000_000)      # not re-run after kill 1
        assert s1.cj_amount == 6_000_000
        # step 3: the held attempt, then one re-run with a new commitment
        assert [p["txid"] for p in s2.pending_txids][0] == held_txid
        assert s2.txid != held_txid and s2.attempts == 2 and len(s2.pending_txids) == 2
        assert len(s2.commitments) == 2 and len(set(s2.commitments)) == 2
        all_commitments = s0.commitments + s1.commitments + s2.commitments
        assert len(all_commitments) == len(set(all_commitments))    # none used twice
        used = set(CommitmentStore(storage).used())
        assert set(all_commitments) <= used                          # the record kept them all
        # no double spend: the held transaction's inputs of ours were spent once, by the re-run
        held_inputs = set(s2.pending_txids[0]["inputs"])
        assert held_inputs and held_inputs == set(s2.pending_txids[1]["inputs"])   # a sweep
        for s in (s0, s1, s2):
            assert bitcoind.rpc("getrawtransaction", s.txid, True)["confirmations"] >= 1
        for op in held_inputs:
            txid, n = op.split(":")
            assert wallet.db.get_spent_outpoint(txid, int(n)) == s2.txid
        # depths exact; no transaction of ours (or our makers') spent two depths
        node.wait_tx(dest, s2.txid, confirmations=1)
        assert dest.get_balance()[0] == s2.cj_amount
        rec = DepthRecord(wallet, storage)
        bal = rec.balances()
        assert bal[1] == 0 and bal[2] == 6_000_000 and bal[3] == bal[4] == 0
        tx0 = wallet.adb.get_transaction(s0.txid)
        assert bal[0] == sum(o.value for o in tx0.outputs() if wallet.is_mine(o.address)) \
            - 12_000_000 + 6_000_000
        for s in (s0, s1, s2):
            tx = wallet.adb.get_transaction(s.txid)
            assert rec.check_tx_inputs(tx) == s.depth
            for p in irc_net.makers:
                p.maker.depths.check_tx_inputs(tx)
        history = storage.get("taker_history", [])
        assert {h["txid"] for h in history if h["status"] == "success"} == \
            {s0.txid, s1.txid, s2.txid}
        print(f"\nF7 held={held_txid} rerun={s2.txid} "
              f"steps={[(s.txid[:12], s.attempts) for s in sched.steps]} "
              f"commitments={len(all_commitments)} balances={bal}")
    finally:
        node.close_wallet(wallet)
        node.close_wallet(dest)
