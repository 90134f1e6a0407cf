#!/usr/bin/env python3
"""Wall time of one coinjoin with 3 makers on the local regtest stack (IRC channel), split into
orderbook wait, fill → all !ioauth checked, !tx → all !sig, broadcast → seen by the wallet.
Prints each run and the median of N runs (default 5).

    .venv/bin/python benchmarks/bench_coinjoin.py [--runs 5]

The orderbook stage is dominated by the configured waits (here: min 3 s, quiet 2 s — tests'
settings; real-network defaults are 20 s / 5 s, up to 60 s).
"""
from __future__ import annotations

import argparse
import functools
import os
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from devstack.bitcoind import start_bitcoind
from devstack.electrum_env import ElectrumNode, stop_electrum_loop
from devstack.electrumx import start_electrumx
from devstack.ircd import start_ircd
from devstack.jmnet import JMNet, irc_config, quick_config
from electrum_joinmarket.protocol.commitments import CommitmentStore

STAGES = ("orderbook", "fill_to_ioauth", "tx_to_sigs", "broadcast_to_seen", "total")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="ejm-bench-cj-"))
    node = start_bitcoind(work / "b")
    ex = start_electrumx(work / "ex", node)
    irc = start_ircd(work / "irc")
    el = ElectrumNode(work / "el", ex.server_string)
    net = JMNet(el, node, work / "jm", irc_config(irc))
    try:
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
        for i, w in enumerate(makers):
            net.add_maker(w, cjfee_r=["0.0002", "0.0003", "0.00025"][i])
        runs = []
        for i, w in enumerate(takers):
            cfg = quick_config(10_000_000, w.get_unused_address() or w.get_receiving_address())
            outcome = net.run_taker(net.taker(w, CommitmentStore({}), cfg))
            if outcome.status != "success":
                print(f"run {i}: FAILED {outcome.message}")
                return 1
            t = outcome.timings
            runs.append(t)
            print(f"run {i}: " + "  ".join(f"{k} {t[k]:6.2f}s" for k in STAGES), flush=True)
            node.mine(1)
            time.sleep(1)
        print("median of %d: " % len(runs)
              + "  ".join(f"{k} {statistics.median(r[k] for r in runs):6.2f}s" for k in STAGES))
        return 0
    finally:
        net.stop()
        for s in (el, irc, ex, node):
            s.stop()
        stop_electrum_loop()


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
