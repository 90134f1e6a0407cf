#!/usr/bin/env python3
"""`make demo`: a real coinjoin on a local regtest JoinMarket network.

Starts bitcoind, ElectrumX, an IRC server and Electrum 4.8 (in-process), three maker wallets
each running the plugin's yield generator with its own jmdaemon, and a taker wallet that runs
one coinjoin through its own jmdaemon. Prints progress, the makers chosen, the fees paid, the
txid and its confirmation. ``--keep`` leaves everything running until Ctrl-C.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devstack.bitcoind import start_bitcoind  # noqa: E402
from devstack.electrum_env import ElectrumNode, stop_electrum_loop  # noqa: E402
from devstack.electrumx import start_electrumx  # noqa: E402
from devstack.ircd import start_ircd  # noqa: E402

from electrum_joinmarket.protocol.commitments import CommitmentStore  # noqa: E402
from devstack.jmnet import JMNet, irc_config, quick_config  # noqa: E402

MAKER_FEES = ("0.0002", "0.0003", "0.00025")


def step(msg: str, t0: float) -> None:
    print(f"[demo {time.monotonic() - t0:6.1f}s] {msg}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keep", action="store_true", help="keep the stack running until Ctrl-C")
    args = ap.parse_args()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="ejm-demo-"))
    t0 = time.monotonic()
    started = []
    try:
        node = start_bitcoind(workdir / "bitcoind")
        started.append(node)
        step(f"bitcoind -regtest: RPC 127.0.0.1:{node.rpc_port}, height {node.height()}, "
             f"datadir {node.datadir}", t0)
        ex = start_electrumx(workdir / "electrumx", node)
        started.append(ex)
        step(f"ElectrumX: tcp 127.0.0.1:{ex.port}, synced to height {ex.height()}", t0)
        irc = start_ircd(workdir / "ircd")
        started.append(irc)
        step(f"IRC server (ngircd): 127.0.0.1:{irc.port}", t0)
        electrum = ElectrumNode(workdir / "electrum", ex.server_string)
        started.append(electrum)
        step(f"Electrum: regtest, one server {ex.server_string}, data {electrum.datadir}", t0)
        makers = []
        for i, fee in enumerate(MAKER_FEES):
            w = electrum.create_wallet(f"maker{i}")
            node.fund(w.get_receiving_addresses()[0], 50_000_000, confirm=False)
            node.fund(w.get_receiving_addresses()[1], 20_000_000, confirm=False)
            makers.append((w, fee))
        taker = electrum.create_wallet("taker")
        dest = electrum.create_wallet("destination")
        node.fund(taker.get_receiving_addresses()[0], 30_000_000, confirm=False)
        node.fund(taker.get_receiving_addresses()[1], 10_000_000, confirm=False)
        node.mine(6)                      # PoDLE commitments need 5 confirmations
        for w in [m[0] for m in makers] + [taker]:
            electrum.wait(lambda w=w: w.get_balance()[0] > 0 and w.is_up_to_date(), 60,
                          f"{w} to see its coins confirmed")
        step("wallets funded: 3 makers (0.7 BTC each), taker 0.4 BTC", t0)
        net = JMNet(electrum, node, workdir / "jm", irc_config(irc))
        started.append(net)
        for w, fee in makers:
            party = net.add_maker(w, cjfee_r=fee)
            step(f"maker {party.maker.nick} announced {party.maker.announced[0]['ordertype']} "
                 f"cjfee {fee} (jmdaemon on 127.0.0.1:{party.daemon.port})", t0)
        amount = 12_500_000
        config = quick_config(amount, dest.get_receiving_address(), n=3, orderbook_min_wait=5.0)

        last = [""]

        def progress(ev: dict) -> None:
            line = f"taker: {ev['stage']:>9}: {ev['message']}"
            if line != last[0]:           # the orderbook stage repeats itself while it waits
                step(line, t0)
                last[0] = line
        taker_run = net.taker(taker, CommitmentStore({}, on_change=None), config,
                              progress=progress)
        outcome = net.run_taker(taker_run, timeout=300)
        if outcome.status != "success":
            step(f"COINJOIN FAILED: {outcome.message}", t0)
            return 1
        for nick, fee in outcome.maker_fees.items():
            step(f"  maker {nick}: fee {fee} sat", t0)
        step(f"  miner fee {outcome.miner_fee} sat (taker's share {outcome.taker_miner_fee} sat); "
             f"total cost to the taker {outcome.total_cost} sat "
             f"({100 * outcome.total_cost / amount:.3f}%)", t0)
        node.mine(1)
        confs = electrum.wait_tx(dest, outcome.txid, confirmations=1, timeout=60)
        step(f"coinjoin {outcome.txid} confirmed ({confs} confirmation, SPV-verified by "
             f"Electrum); destination received {dest.get_balance()[0]} sat", t0)
        print(f"TXID {outcome.txid}", flush=True)
        if args.keep:
            print("Ctrl-C to stop.", flush=True)
            while True:
                time.sleep(3600)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        for service in reversed(started):
            service.stop()
        stop_electrum_loop()
        step("stopped everything", t0)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
