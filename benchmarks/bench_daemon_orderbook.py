#!/usr/bin/env python3
"""Benchmark: a taker's jmdaemon collects an orderbook of 1,000 offers from 500 makers through the
real onion channel (test mode, our directory node), every offer reply signed with a real nick key
and verified by the client over AMP, as on the live network.

Prints: daemon start-up time, idle RSS, time from JMSetup (the !orderbook request) to a complete
orderbook at the client, RSS after, and peak RSS (VmHWM).

    .venv/bin/python benchmarks/bench_daemon_orderbook.py [--makers 500] [--offers-per-maker 2]
"""
import argparse
import asyncio
import json
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devstack.daemons import TestClient, nick_key, start_daemon, start_directory  # noqa: E402
from devstack.rawpeer import RawOnionPeer  # noqa: E402


def proc_status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Maker:
    """A raw onion maker: answers !orderbook with one signed privmsg holding its offers."""

    def __init__(self, i, n_offers):
        self.key = nick_key()
        self.nick = self.key.nick
        offers = ["sw0reloffer %d 27300 %d 0 0.0000%d" % (k, 10 ** 8 + i, 1 + k % 9)
                  if k % 2 == 0 else "sw0absoffer %d 27300 %d 0 %d" % (k, 10 ** 8 + i, 200 + i)
                  for k in range(n_offers)]
        cmd, first = offers[0].split(" ", 1)
        self.cmd = cmd
        self.body = first + "".join("!" + o for o in offers[1:])
        self.sig = self.key.sign(self.body, "onion-network")
        self.peer = None

    async def connect(self, port):
        self.peer = await RawOnionPeer(self.nick, network="testnet").connect(port)

    async def serve(self):
        answered = set()
        while True:
            for t, line in list(self.peer.received):
                if t == 687 and line.endswith("!PUBLIC!orderbook"):
                    taker = line.split("!", 1)[0]
                    if taker not in answered:
                        answered.add(taker)
                        self.peer.send(685, "%s!%s!%s %s %s %s" % (
                            self.nick, taker, self.cmd, self.body, self.key.pubkey_hex, self.sig))
            self.peer.received.clear()
            await asyncio.sleep(0.05)


async def bench(args, workdir):
    d = start_directory(workdir, "directory", network="regtest")
    t0 = time.monotonic()
    daemon = start_daemon(workdir, "taker", extra=["--loglevel", "INFO"])
    startup = time.monotonic() - t0
    pid = daemon.proc.pid
    rss_idle = proc_status(pid, "VmRSS")
    makers = [Maker(i, args.offers_per_maker) for i in range(args.makers)]
    for m in makers:
        await m.connect(d.port)
    tasks = [asyncio.ensure_future(m.serve()) for m in makers]
    cfg = [{"type": "onion", "directory_nodes": "127.0.0.1:%d" % d.port, "regtest_count": "1, 1",
            "serving": False, "welcome_timeout": 10}]
    taker = await TestClient("taker").connect(daemon.port)
    await taker.init(cfg)
    rss_up = proc_status(pid, "VmRSS")
    want = args.makers * args.offers_per_maker
    t1 = time.monotonic()
    await taker.call("JMSetup", role="TAKER", initdata=None, use_fidelity_bond=False)
    polls = 0
    while True:
        n_before = taker.count("JMOffers")
        await taker.call("JMRequestOffers")
        ev = await taker.wait_for("JMOffers", count=n_before + 1, timeout=120)
        polls += 1
        book = json.loads(ev["orderbook"])
        if len(book) >= want:
            break
        if time.monotonic() - t1 > 300:
            raise SystemExit("orderbook incomplete after 300 s: %d/%d" % (len(book), want))
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - t1
    rss_after = proc_status(pid, "VmRSS")
    peak = proc_status(pid, "VmHWM")
    makers_seen = len({o["counterparty"] for o in book})
    for tk in tasks:
        tk.cancel()
    taker.close()
    for m in makers:
        m.peer.close()
    rc = daemon.stop()
    d.stop()
    print("jmdaemon orderbook benchmark (onion channel, test mode, via our directory node)")
    print("  makers / offers                  : %d / %d (book at client: %d offers, %d makers)"
          % (args.makers, want, len(book), makers_seen))
    print("  signature verifications (client) : %d" % len(taker.verify_requests))
    print("  daemon start-up time             : %.2f s (spawn -> listening)" % startup)
    print("  daemon idle RSS                  : %.1f MB (after start) / %.1f MB (channels up)"
          % (rss_idle / 1024, rss_up / 1024))
    print("  time to complete orderbook       : %.2f s (JMSetup -> JMOffers with %d offers, %d polls)"
          % (elapsed, len(book), polls))
    print("  daemon RSS after / peak (VmHWM)  : %.1f MB / %.1f MB" % (rss_after / 1024, peak / 1024))
    print("  JMOffers orderbook JSON size     : %d bytes (BigUnicode, %d AMP chunks)"
          % (len(ev["orderbook"]), len(ev["orderbook"].encode()) // 65535 + 1))
    print("  daemon exit status               : %d" % rc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--makers", type=int, default=500)
    ap.add_argument("--offers-per-maker", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(args, pathlib.Path(tmp)))


if __name__ == "__main__":
    main()
