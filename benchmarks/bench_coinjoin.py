#!/usr/bin/env python3
"""Wall time of one coinjoin with 3 makers on the local regtest stack, split into phases:
connect (JMInit → channels up → JMSetup), orderbook, fill → every !ioauth checked on-chain,
ioauth → !tx sent, !tx → every !sig, broadcast → seen by the wallet; fill → sigs and the total.
Prints each run, then the medians; the last line is ``median total_s=X fill_to_sigs_s=Y`` followed
by the median of every phase.

    .venv/bin/python benchmarks/bench_coinjoin.py [--runs 5] [--channel irc|onion]
                                                   [--production-like] [--line-rate S]

Each maker runs in its own process with its own Electrum and jmdaemon (devstack.maker_proc), as
on a real network: its chain checks use its own server connection and its signing its own CPU.
The taker runs in this process. The lab stack switches the Electrum protocol's padding hold off
at both ends (devstack/padding.py); ``--production-like`` keeps it on (``EJM_PADDING_HOLD=1``), as a real
server and Electrum do. The taker uses the local-network orderbook policy of the tests
(devstack.jmnet.LOCAL_ORDERBOOK: short minimum wait and quiet period; the defaults for the real
network are 20 s / 5 s, up to 60 s). IRC lines are unpaced unless ``--line-rate`` is given (the
lab's ngircd has no flood penalty; the daemon's default for real networks is 1.3 s per line).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from devstack.bitcoind import start_bitcoind
from devstack.daemons import start_directory
from devstack.electrum_env import ElectrumNode, stop_electrum_loop
from devstack.electrumx import start_electrumx
from devstack.ircd import irc_config, start_ircd
from devstack.jmnet import JMNet, onion_config, quick_config
from devstack.maker_proc import spawn_maker
from devstack.padding import ENV as HOLD_ENV
from devstack.procs import free_port
from devstack.wallets import fund_wallets, new_wallet
from electrum_joinmarket.protocol.commitments import CommitmentStore

PHASES = ("connect", "orderbook", "fill_to_ioauth", "ioauth_to_tx", "tx_to_sigs",
          "broadcast_to_seen", "fill_to_sigs", "total")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--channel", choices=("irc", "onion"), default="irc")
    ap.add_argument("--production-like", action="store_true",
                    help="keep the Electrum protocol padding hold on at both ends")
    ap.add_argument("--line-rate", type=float, default=0.0,
                    help="IRC: seconds between lines a daemon sends (default 0: unpaced)")
    args = ap.parse_args()

    os.environ[HOLD_ENV] = "1" if args.production_like else "0"   # read when the stack starts

    work = pathlib.Path(tempfile.mkdtemp(prefix="ejm-bench-cj-"))
    services: list = []
    node = start_bitcoind(work / "b")
    services.append(node)
    ex = start_electrumx(work / "ex", node)
    services.append(ex)
    if args.channel == "irc":
        irc = start_ircd(work / "irc")
        services.append(irc)
        chan = irc_config(irc)
        for c in chan:
            c["line_rate"] = args.line_rate       # 0: unpaced
        def configs(role, index):
            return chan
    else:
        directory = start_directory(work, network="regtest")
        services.append(directory)
        ports = [free_port() for _ in range(3)]

        def configs(role, index):
            return onion_config(directory, ports[index] if role == "maker" else 0)
    el = ElectrumNode(work / "el", ex.server_string)
    services.append(el)
    net = JMNet(el, node, work / "jm", configs)
    hold = "on (production-like)" if args.production_like else "off (lab)"
    print(f"channel {args.channel}, padding hold {hold}, {args.runs} run(s), 3 makers",
          flush=True)
    makers: list = []
    try:
        for i in range(3):
            makers.append(spawn_maker(work / f"maker{i}", ex.server_string, configs("maker", i),
                                      name=f"m{i}", addresses=args.runs + 2))
        takers = [new_wallet(el, name=f"t{i}") for i in range(args.runs)]
        for mp in makers:                  # the makers' wallets live in their own processes
            for addr in mp.addresses[:args.runs + 2]:
                node.fund(addr, 20_000_000, confirm=False)
        # one block for everything, 5 more for PoDLE's coin age
        fund_wallets(el, node, [(w, [20_000_000]) for w in takers], confirmations=6)
        for i, mp in enumerate(makers):
            mp.start(["0.0002", "0.0003", "0.00025"][i])
        runs = []
        for i, w in enumerate(takers):
            cfg = quick_config(10_000_000, w.get_unused_address() or w.get_receiving_address())
            outcome = net.run_taker(net.taker(w, CommitmentStore({}), cfg))
            if outcome.status != "success":
                print(f"run {i}: FAILED {outcome.message}")
                return 1
            t = outcome.timings
            runs.append(t)
            print(f"run {i}: " + "  ".join(f"{k} {t[k]:6.3f}s" for k in PHASES), flush=True)
            node.mine(1)
            time.sleep(2)          # between runs only: makers see the block, re-announce offers
        med = {k: statistics.median(r[k] for r in runs) for k in PHASES}
        print("median of %d: " % len(runs) + "  ".join(f"{k} {med[k]:6.3f}s" for k in PHASES))
        print(f"median total_s={med['total']:.3f} fill_to_sigs_s={med['fill_to_sigs']:.3f} "
              + " ".join(f"{k}_s={med[k]:.3f}" for k in PHASES
                         if k not in ("total", "fill_to_sigs")))
        return 0
    finally:
        for mp in makers:
            mp.stop()
        net.stop()
        for s in reversed(services):
            s.stop()
        stop_electrum_loop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
