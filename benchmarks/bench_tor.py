#!/usr/bin/env python3
"""Figures of JoinMarket over the private Tor network (devstack/tor.py) on the regtest stack:

* Tor network bootstrap: from the first tor process (after key generation) to every authority and
  relay at 100 %, and the key generation itself;
* a client tor from start to 100 %;
* our directory node: its onion published through the control port, then reachable through
  another client's SOCKS port (a 793 handshake answered);
* each maker's onion published (ADD_ONION) and the maker up;
* a coinjoin with 3 makers: taker start (connecting to its daemon) → broadcast, over Tor.

Ends with one line of key=value figures.

    .venv/bin/python benchmarks/bench_tor.py [--runs 1]
"""
from __future__ import annotations

import argparse
import functools
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from devstack.bitcoind import start_bitcoind
from devstack.daemons import start_tor_directory
from devstack.electrum_env import ElectrumNode, stop_electrum_loop
from devstack.electrumx import start_electrumx
from devstack.jmnet import JMNet, quick_config, tor_onion_config
from devstack.tor import TorNet, onion_handshake
from electrum_joinmarket.protocol.commitments import CommitmentStore


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1, help="coinjoins to time (median printed)")
    args = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="ejm-bench-tor-"))
    started: list[Any] = []
    fig: dict[str, Any] = {}
    try:
        node = start_bitcoind(work / "b")
        started.append(node)
        ex = start_electrumx(work / "ex", node)
        started.append(ex)
        el = ElectrumNode(work / "el", ex.server_string)
        started.append(el)
        tor = TorNet(work / "tor")
        started.append(tor)
        tor.start()
        fig["tor_keys_s"] = round(tor.timings["keys"], 1)
        fig["tor_network_bootstrap_s"] = round(tor.timings["network_ready"] - tor.timings["keys"], 1)
        fig["tor_attempts"] = tor.attempts
        print(f"private Tor network up: {tor.timings}", flush=True)
        dir_tor = tor.add_client("directory")
        fig["tor_client_s"] = round(tor.timings["client:directory"], 1)
        t = time.monotonic()
        directory = start_tor_directory(work / "jm", dir_tor.control_port)
        started.append(directory)
        fig["directory_published_s"] = round(time.monotonic() - t, 1)
        taker_tor = tor.add_client("taker")
        _, reach = onion_handshake(taker_tor.socks_port, directory.extra["location"])
        fig["directory_reachable_s"] = round(fig["directory_published_s"] + reach, 1)
        print(f"directory {directory.extra['location']}: published in "
              f"{fig['directory_published_s']}s, reachable {reach:.1f}s later", flush=True)
        maker_tors = [tor.add_client(f"maker{i}") for i in range(3)]
        location = directory.extra["location"]

        def configs(role: str, index: int) -> list:
            if role == "maker":
                return tor_onion_config(location, maker_tors[index], serving=True)
            return tor_onion_config(location, taker_tor, serving=False)
        net = JMNet(el, node, work / "jm", configs)
        started.append(net)
        makers = [el.create_wallet(f"m{i}") for i in range(3)]
        takers = [el.create_wallet(f"t{i}") for i in range(args.runs)]
        for w in makers:
            for i in range(args.runs + 2):
                node.fund(w.get_receiving_addresses()[i], 20_000_000, confirm=False)
        for w in takers:
            node.fund(w.get_receiving_addresses()[0], 20_000_000, confirm=False)
        node.mine(6)

        def funded(w: Any) -> bool:
            return bool(w.is_up_to_date() and w.get_balance()[1] == 0 and w.get_balance()[0] > 0)
        for w in makers + takers:
            el.wait(functools.partial(funded, w), 60, "funding")
        up = []
        for i, w in enumerate(makers):
            t = time.monotonic()
            net.add_maker(w, cjfee_r=["0.0002", "0.0003", "0.00025"][i])
            up.append(time.monotonic() - t)
        fig["maker_up_s"] = round(statistics.median(up), 1)
        print(f"makers up (onion published, directory handshaked) in {[round(x, 1) for x in up]}s",
              flush=True)
        runs: list[float] = []
        for w in takers:
            dest = el.create_wallet(f"d{len(runs)}")
            events: list[dict] = []
            taker = net.taker(w, CommitmentStore({}, on_change=None),
                              quick_config(5_000_000, dest.get_receiving_address()),
                              progress=events.append)
            outcome = net.run_taker(taker, timeout=420)
            if outcome.status != "success":
                print(f"coinjoin failed: {outcome.message}", flush=True)
                fig["coinjoin"] = "failed"
                break
            t0 = [e["time"] for e in events if e["stage"] == "connect"][0]
            t1 = [e["time"] for e in events if e["stage"] == "broadcast"][0]
            runs.append(t1 - t0)
            print(f"coinjoin {outcome.txid}: taker start -> broadcast {t1 - t0:.1f}s", flush=True)
            node.mine(1)
        if runs:
            fig["coinjoin"] = "ok"
            fig["taker_start_to_broadcast_s"] = round(statistics.median(runs), 1)
        fig["tor_rss_mb_max"] = round(max(tor.rss_mb().values()), 1)
    finally:
        for s in reversed(started):
            try:
                s.stop()
            except Exception as exc:
                print(f"could not stop {s!r}: {exc!r}")
        stop_electrum_loop()
    print("tor: " + " ".join(f"{k}={v}" for k, v in fig.items()), flush=True)
    return 0 if fig.get("coinjoin") == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
