#!/usr/bin/env python3
"""`make demo`: start a local regtest JoinMarket stack and show what runs where.

Today this starts bitcoind, ElectrumX, an IRC server and an in-process Electrum 4.8 with a funded
taker wallet, and reports each step's time. The coinjoin itself arrives with the complete-coinjoin
issue. ``--keep`` leaves everything running until Ctrl-C.
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

from tests.stack.bitcoind import start_bitcoind  # noqa: E402
from tests.stack.electrum_env import ElectrumNode, stop_electrum_loop  # noqa: E402
from tests.stack.electrumx import start_electrumx  # noqa: E402
from tests.stack.ircd import start_ircd  # noqa: E402


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
        taker = electrum.create_wallet("taker")
        txid = node.fund(taker.get_receiving_address(), 100_000_000)
        electrum.wait_tx(taker, txid, confirmations=1)
        step(f"taker wallet funded: {taker.get_balance()[0]} sat confirmed (txid {txid})", t0)
        step("stack ready. (The coinjoin with three makers comes with the complete-coinjoin issue.)", t0)
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
