#!/usr/bin/env python3
"""What loaded wallets cost an Electrum process that does nothing: the CPU time of this
process (Electrum in-process, as in the tests' ``electrum_node``) over an idle period and over
mined blocks, with 1 wallet loaded and then with N. Each loaded wallet keeps three of Electrum's
jobs polling ten times a second (the synchronize loop through ``run_in_thread``, the
synchronizer, the SPV verifier); this is why the tests close the wallets they load
(docs/devstack.md, "Electrum in the tests").

    .venv/bin/python benchmarks/bench_idle_wallets.py [--wallets 60] [--idle 10] [--blocks 10]

Ends with one line of key=value figures (CPU seconds; ``*_core`` = share of one core).
"""
from __future__ import annotations

import argparse
import pathlib
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from devstack.bitcoind import start_bitcoind
from devstack.electrum_env import ElectrumNode, stop_electrum_loop
from devstack.electrumx import start_electrumx
from devstack.wallets import new_wallet


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wallets", type=int, default=60, help="wallets loaded in the second round")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of idle time measured")
    ap.add_argument("--blocks", type=int, default=10, help="blocks mined one at a time")
    args = ap.parse_args()
    d = pathlib.Path(tempfile.mkdtemp(prefix="ejm-bench-wallets-"))
    node = start_bitcoind(d / "bitcoind")
    ex = start_electrumx(d / "electrumx", node)
    el = ElectrumNode(d / "electrum", ex.server_string)
    figures: dict[str, float] = {}
    try:
        def measure(label: str) -> None:
            time.sleep(1.0)                       # let the last wallet's start-up settle
            t = cpu_s()
            time.sleep(args.idle)
            idle = cpu_s() - t
            h = el.network.get_local_height()
            t = cpu_s()
            for i in range(args.blocks):
                node.mine(1)
                el.wait_height(h + i + 1)
            time.sleep(1.0)                       # the wallets' work on the last block
            blocks = cpu_s() - t                  # idle polling during those seconds included
            figures[f"idle_{label}_core"] = round(idle / args.idle, 3)
            figures[f"per_block_{label}_s"] = round(blocks / args.blocks, 4)
            print(f"{label:>10} wallet(s): idle {idle / args.idle:.1%} of a core, "
                  f"{blocks / args.blocks * 1000:.1f} ms of CPU per mined block (idle polling included)",
                  flush=True)

        wallets = [new_wallet(el, node, [1_000_000])]
        measure("1")
        wallets += [new_wallet(el, node, [1_000_000]) for _ in range(args.wallets - 1)]
        measure(str(args.wallets))
        for w in wallets[1:]:
            el.close_wallet(w)
        measure("1_again")
        per_wallet = (figures[f"idle_{args.wallets}_core"] - figures["idle_1_core"]) \
            / (args.wallets - 1)
        figures["idle_per_wallet_core"] = round(per_wallet, 4)
    finally:
        el.stop()
        stop_electrum_loop()
        ex.stop()
        node.stop()
        shutil.rmtree(d, ignore_errors=True)
    print(" ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
