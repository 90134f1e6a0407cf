#!/usr/bin/env python3
"""Time from nothing to a ready regtest stack: bitcoind (110 blocks mined), ElectrumX synced,
ngircd listening, Electrum connected, one wallet created and synced. Prints the median of N runs.

    .venv/bin/python benchmarks/bench_stack_startup.py [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from devstack.bitcoind import start_bitcoind
from devstack.electrum_env import ElectrumNode, stop_electrum_loop
from devstack.electrumx import start_electrumx
from devstack.ircd import start_ircd


def one_run() -> dict[str, float]:
    d = pathlib.Path(tempfile.mkdtemp(prefix="ejm-bench-"))
    marks: dict[str, float] = {}
    t0 = time.monotonic()

    def mark(name: str) -> None:
        marks[name] = time.monotonic() - t0

    node = start_bitcoind(d / "bitcoind")
    mark("bitcoind")
    ex = start_electrumx(d / "electrumx", node)
    mark("electrumx")
    irc = start_ircd(d / "ircd")
    mark("ircd")
    el = ElectrumNode(d / "electrum", ex.server_string)
    mark("electrum")
    el.create_wallet("w")
    mark("wallet")
    for s in (el, irc, ex, node):
        s.stop()
    return marks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # Electrum's Network is a per-process singleton: one stack per process
        print("RESULT " + json.dumps(one_run()), flush=True)
        stop_electrum_loop()
        return
    runs = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, __file__, "--one"], capture_output=True, text=True,
                             timeout=300).stdout
        runs.append(json.loads(next(l for l in out.splitlines() if l.startswith("RESULT "))[7:]))
    for key in runs[0]:
        print(f"{key:10s} ready after {statistics.median(r[key] for r in runs):5.2f}s "
              f"(median of {len(runs)}, cumulative from start)")


if __name__ == "__main__":
    try:
        main()
        code = 0
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
