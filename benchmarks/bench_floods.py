#!/usr/bin/env python3
"""Issue 12's floods against real daemons while an honest taker and three honest makers (real
Electrum wallets, the plugin's Taker and Maker, one jmdaemon each) do a coinjoin on regtest.

Every party and the attacker meet at one directory that relays any sender name, as the
reference's do (devstack.refdirectory; on the live network nicks cost nothing). The attacker
(devstack.flood, its own process) learns the makers and, when the honest taker asks for offers,
its nick; the floods, sized as in issue 12:

* H4/D10: 100,000 ``!orderbook`` from 100,000 nicks (at the makers);
* H3/D8:  bursts of 200, 300, 500 and 1,000 signed ``!fill`` from throw-away nicks at one maker;
* H2/D13: 5,000 nicks x 50 public offers (at the taker, as soon as it asks for offers);
* H4/D9:  50,000 badly signed private messages at the taker, most under the makers' nicks and
  real pubkeys.

Prints the daemons' peak RSS (VmHWM), what reached the plugins (the orderbooks handed to the
taker: offers and bytes; the signature checks and signatures asked of each maker's plugin), the
coinjoin's outcome, and ends with one line::

    flood: peak_rss_mb=N honest_coinjoin=ok|failed honest_maker_kept=yes|no

``honest_maker_kept``: every honest maker was in the last orderbook the taker's plugin got, and
none that was in one orderbook is missing from a later one (a flood that evicts a maker for a
while and lets it back counts as not kept).

    .venv/bin/python benchmarks/bench_floods.py [--junk 50000] [--orderbook 100000]
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devstack.bitcoind import start_bitcoind  # noqa: E402
from devstack.daemons import peak_rss_kb, start_ref_directory  # noqa: E402
from devstack.electrum_env import ElectrumNode, stop_electrum_loop  # noqa: E402
from devstack.electrumx import start_electrumx  # noqa: E402
from devstack.jmnet import JMNet, quick_config  # noqa: E402
from electrum_joinmarket.protocol.commitments import CommitmentStore  # noqa: E402
from electrum_joinmarket.taker.taker import Taker  # noqa: E402


class RecordingTaker(Taker):
    """The plugin's Taker, noting the size of every orderbook the daemon hands it."""

    books: list[tuple[int, int, list[str]]] = []

    def on_JMOffers(self, orderbook: str, fidelitybonds: str) -> None:
        try:
            nicks = sorted({o["counterparty"] for o in json.loads(orderbook)})
        except (ValueError, TypeError, KeyError):
            nicks = []
        RecordingTaker.books.append((len(orderbook) + len(fidelitybonds),
                                     orderbook.count('"counterparty"'), nicks))
        super().on_JMOffers(orderbook, fidelitybonds)


def funded(w: Any) -> bool:
    return bool(w.is_up_to_date() and w.get_balance()[1] == 0 and w.get_balance()[0] > 0)


def chan_configs(relay):
    def configs(role, index):
        cfg = {"type": "onion", "test_mode": True, "directory_nodes": "127.0.0.1:%d" % relay.port,
               "onion_serving_host": "127.0.0.1", "welcome_timeout": 10,
               "serving": role == "maker"}
        if role == "maker":
            cfg["onion_serving_port"] = 0
        return [cfg]
    return configs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orderbook", type=int, default=100_000)
    ap.add_argument("--fills", default="200,300,500,1000")
    ap.add_argument("--offers", default="5000,50")
    ap.add_argument("--junk", type=int, default=50_000)
    ap.add_argument("--loglevel", default="INFO", help="the daemons' (INFO, as users run them)")
    args = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="ejm-bench-floods-"))
    logging.basicConfig(filename=str(work / "bench.log"), level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print("work dir %s (bench.log: the plugin's log)" % work, flush=True)
    node = start_bitcoind(work / "b")
    ex = start_electrumx(work / "ex", node)
    relay = start_ref_directory(work, network="testnet")
    el = ElectrumNode(work / "el", ex.server_string)
    net = JMNet(el, node, work / "jm", chan_configs(relay),
                daemon_args=("--loglevel", args.loglevel))
    flooder = None
    try:
        makers = [el.create_wallet(f"m{i}") for i in range(3)]
        taker_w = el.create_wallet("t0")
        for w in makers:
            for i in range(3):
                node.fund(w.get_receiving_addresses()[i], 20_000_000, confirm=False)
        node.fund(taker_w.get_receiving_addresses()[0], 30_000_000, confirm=False)
        node.mine(6)
        for w in makers + [taker_w]:
            el.wait(functools.partial(funded, w), 60, "funding")
        parties = [net.add_maker(w, cjfee_r=["0.0002", "0.0003", "0.00025"][i])
                   for i, w in enumerate(makers)]
        maker_nicks = [p.maker.nick for p in parties]
        rss_idle = {d.logpath.stem: peak_rss_kb(d.proc.pid) for d in net.daemons}
        n_nicks, n_offers = (int(x) for x in args.offers.split(","))
        plan = {"makers": 3, "orderbook": args.orderbook, "fill_target": 0,
                "fill_bursts": [int(x) for x in args.fills.split(",") if x], "fill_every": 5,
                "offers": [n_nicks, n_offers], "junk": args.junk, "junk_rate": 20_000,
                "network": "testnet"}
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        flooder = subprocess.Popen([sys.executable, "-m", "devstack.flood", "--directory",
                                    "127.0.0.1:%d" % relay.port, "--plan", json.dumps(plan)],
                                   stdout=subprocess.PIPE, stderr=open(work / "flood.log", "wb"),
                                   text=True, env=env)
        assert flooder.stdout is not None
        for _ in range(2):                  # "flood: learnt 3 makers", "flood: ready"
            print(flooder.stdout.readline().strip(), flush=True)
        clients: dict[str, Any] = {}            # maker nick -> its plugin's daemon client
        for p in parties:
            assert p.maker.client is not None and p.maker.nick, "a maker without its daemon link"
            clients[p.maker.nick] = p.maker.client
        signed0 = {n: c.signed for n, c in clients.items()}
        checked0 = {n: c.verified + c.rejected_signatures for n, c in clients.items()}
        t0 = time.monotonic()
        # the real network's orderbook waits (the tests' are 3 s / 2 s): the floods arrive while
        # the taker collects offers
        cfg = quick_config(10_000_000, taker_w.get_unused_address()
                           or taker_w.get_receiving_address(), orderbook_min_wait=20.0,
                           orderbook_quiet=5.0, orderbook_max_wait=60.0, maker_timeout_sec=60)
        taker = net.taker(taker_w, CommitmentStore({}), cfg)
        taker.__class__ = RecordingTaker
        outcome = net.run_taker(taker, timeout=900)
        elapsed = time.monotonic() - t0
        try:
            rest, _ = flooder.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            flooder.kill()
            rest, _ = flooder.communicate()
        for ln in rest.splitlines():
            print(ln.strip())
        time.sleep(2)
        peaks = {d.logpath.stem: peak_rss_kb(d.proc.pid) for d in net.daemons}
        alive = {d.logpath.stem: d.alive() for d in net.daemons}
        print("coinjoin: %s in %.0f s (%s)%s" % (outcome.status, elapsed, outcome.message,
                                                 " txid " + outcome.txid if outcome.txid else ""))
        print("coinjoin makers: %s" % ", ".join(
            "%s%s" % (n, " (honest maker %d)" % maker_nicks.index(n) if n in maker_nicks else "")
            for n in outcome.makers))
        for name in sorted(peaks):
            idle = ("%6.1f MB" % (rss_idle[name] / 1024)) if name in rss_idle else "   (later)"
            print("daemon %-8s RSS before the floods %s, peak %6.1f MB%s" % (
                name, idle, peaks[name] / 1024, "" if alive[name] else "  (DIED)"))
        books = RecordingTaker.books
        if books:
            biggest = max(books)
            print("to the taker's plugin: %d orderbooks, largest %d bytes (%d offers), last %d "
                  "offers of %d nicks" % (len(books), biggest[0], biggest[1], books[-1][1],
                                          len(books[-1][2])))
        for nick, c in clients.items():
            print("to maker %s's plugin: %d signatures and %d signature checks asked during the "
                  "floods" % (nick, c.signed - signed0[nick],
                              c.verified + c.rejected_signatures - checked0[nick]))
        for d in net.daemons:
            stats = [ln.split("jmdaemon.", 1)[1] for ln in d.log().splitlines()
                     if ("refused" in ln or "pausing" in ln or "orderbook full" in ln
                         or "dropped (" in ln or "over the rate" in ln) and " WARNING " in ln]
            for s in stats[-3:]:
                print("  %s: %s" % (d.logpath.stem, s[:160]))
        # kept: every honest maker is in the last book, and none that was in a (non-empty) book
        # is missing from a later non-empty one
        vanished = []
        for n in maker_nicks:
            seen = [n in nicks for _, count, nicks in books if count]
            first = seen.index(True) if True in seen else None
            print("honest maker %d: in %d of %d orderbooks (first in #%s)" % (
                maker_nicks.index(n), sum(seen), len(seen),
                "-" if first is None else first + 1))
            if first is not None and not all(seen[first:]):
                vanished.append(n)
        kept = bool(books) and all(n in books[-1][2] for n in maker_nicks) and not vanished
        ok = outcome.status == "success" and all(alive.values())
        peak_mb = max(peaks.values()) / 1024
        print("flood: peak_rss_mb=%d honest_coinjoin=%s honest_maker_kept=%s"
              % (round(peak_mb), "ok" if ok else "failed", "yes" if kept else "no"))
        return 0 if ok and kept else 1
    finally:
        if flooder is not None and flooder.poll() is None:
            flooder.kill()
        net.stop()
        relay.stop()
        for s in (el, ex, node):
            s.stop()
        stop_electrum_loop()


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
