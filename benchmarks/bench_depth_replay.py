#!/usr/bin/env python3
"""Cost of the depth record's replay (electrum_joinmarket.depths.record.DepthRecord.refresh) on
a real Electrum 4.8 wallet with many transactions, on the local regtest stack.

The wallet gets ``--deposits`` incoming transactions and ``--spends`` ordinary payments of its
own (each spending its coins, so every replay deserializes them). Measured: the first replay
(what a restore from seed or the first use of the plugin costs), a refresh with nothing new
(cached), and a replay after one more transaction (what every new transaction costs); plus the
size of the record in the wallet file. The last line is the key=value summary.

    .venv/bin/python benchmarks/bench_depth_replay.py [--deposits 300] [--spends 100]
"""
from __future__ import annotations

import argparse
import functools
import json
import pathlib
import shutil
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from devstack.bitcoind import start_bitcoind
from devstack.electrum_env import ElectrumNode, stop_electrum_loop
from devstack.electrumx import start_electrumx


def _has_tx(wallet: Any, txid: str) -> bool:
    return wallet.adb.get_transaction(txid) is not None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--deposits", type=int, default=300)
    ap.add_argument("--spends", type=int, default=100)
    args = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ejm-bench-depths-"))
    bitcoind = ex = node = None
    try:
        bitcoind = start_bitcoind(tmp / "bitcoind")
        ex = start_electrumx(tmp / "electrumx", bitcoind)
        node = ElectrumNode(tmp / "electrum", ex.server_string,
                            extra_config={"plugins.joinmarket.enabled": False})
        wallet = node.create_wallet("bench")
        while len(wallet.get_receiving_addresses()) < args.deposits:
            wallet.create_new_address(for_change=False)
        t0 = time.monotonic()
        for i, addr in enumerate(wallet.get_receiving_addresses()[:args.deposits]):
            bitcoind.fund(addr, 1_000_000 + i, confirm=False)
            if i % 20 == 19:           # bitcoind's unconfirmed chain limit
                bitcoind.mine(1)
        bitcoind.mine(1)
        # (a deposit or two may land on an address Electrum has not subscribed yet: go on with
        # what arrived)
        node.wait(lambda: len(wallet.get_utxos()) >= args.deposits * 0.95, 600, "the deposits")
        node.wait_synced(wallet, 600)
        own = wallet.get_receiving_addresses()
        for i in range(args.spends):
            tx = node.pay(wallet, own[i % len(own)], 500_000)
            node.wait(functools.partial(_has_tx, wallet, tx.txid()), 60, "a payment")
            if i % 20 == 19:
                bitcoind.mine(1)
        bitcoind.mine(1)
        node.wait_synced(wallet, 600)
        fund_s = time.monotonic() - t0
        n_txs = len(wallet.db.list_transactions())

        from electrum_joinmarket.depths.record import DEPTHS_KEY, DepthRecord
        storage: dict = {}
        rec = DepthRecord(wallet, storage, save=lambda: None)
        t = time.perf_counter()
        coins = rec.refresh()
        first_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        for _ in range(100):
            rec.refresh()
        cached_us = (time.perf_counter() - t) * 1e6 / 100
        tx = node.pay(wallet, own[0], 400_000)
        node.wait(lambda: wallet.adb.get_transaction(tx.txid()) is not None, 60, "one more tx")
        t = time.perf_counter()
        rec.refresh()
        incr_ms = (time.perf_counter() - t) * 1000
        record_kb = len(json.dumps(storage[DEPTHS_KEY])) / 1024
        print(f"wallet: {n_txs} transactions, {len(coins)} coins (built in {fund_s:.0f} s)")
        print(f"first replay {first_ms:.1f} ms; cached refresh {cached_us:.1f} us; "
              f"replay after one new transaction {incr_ms:.1f} ms; record {record_kb:.1f} KiB")
        print(f"txs={n_txs} coins={len(coins)} first_replay_ms={first_ms:.1f} "
              f"cached_refresh_us={cached_us:.1f} replay_after_new_tx_ms={incr_ms:.1f} "
              f"record_kib={record_kb:.1f}")
    finally:
        if node is not None:
            node.stop()
        stop_electrum_loop()
        for p in (ex, bitcoind):
            if p is not None:
                p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
