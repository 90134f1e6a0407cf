"""Hostile floods of issue 12 (TESTING.md D8, D9, D10, D13), as onion lines a raw peer sends
through a directory that relays any sender name (devstack.refdirectory):

* :func:`offer_flood` (H2, D13): many nicks each announcing many public offers (packed into one
  pubmsg per nick). Sizes are below any real coinjoin amount, so no taker ever picks one: the
  flood tests the book, not the taker's choice;
* :func:`fill_flood` (H3, D8): ``!fill`` from throw-away nick keys, correctly signed;
* :func:`junk_flood` (H4, D9): private messages to a taker with bad signatures, under the nicks
  and real pubkeys of makers it talks to (so that they pass every check but the signature) and
  under random nicks;
* :func:`orderbook_flood` (H4, D10): ``!orderbook`` from cycling nicks.

``python -m devstack.flood --directory 127.0.0.1:PORT --plan plan.json`` runs a plan in its own
process (benchmarks/bench_floods.py): it connects as a peer, learns makers (their offers, and
their pubkeys from the signed replies to its own ``!orderbook``) and the taker (its
``!orderbook``), and fires the floods the plan names when the plan says.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time

from jmdaemon import wire

HOSTID = "onion-network"


def flood_nick(kind: str, i: int) -> str:
    """A nick-shaped throw-away name (public messages are not signed)."""
    return ("J5" + kind[:2] + "%012d" % i)[:16]


def offer_flood(n_nicks: int, n_offers: int, start: int = 0) -> list[str]:
    lines = []
    for i in range(start, start + n_nicks):
        nick = flood_nick("of", i)
        offers = "".join("!sw0absoffer %d 27300 30000 0 %d" % (oid, 100 + oid)
                         for oid in range(n_offers))
        lines.append(wire.encode_onion_line(687, nick + "!PUBLIC" + offers))
    return lines


def orderbook_flood(n: int, start: int = 0) -> list[str]:
    return [wire.encode_onion_line(687, flood_nick("ob", i) + "!PUBLIC!orderbook")
            for i in range(start, start + n)]


def fill_keys(n: int) -> list:
    from electrum_joinmarket.protocol.nick import NickKey
    return [NickKey() for _ in range(n)]


def fill_flood(keys: list, maker_nick: str, amount: int = 5_000_000, oid: int = 0) -> list[str]:
    lines = []
    for key in keys:
        body = "%d %d %s P%s" % (oid, amount, os.urandom(32).hex(), os.urandom(32).hex())
        sig = key.sign(body, HOSTID)
        lines.append(wire.encode_onion_line(
            685, "%s!%s!fill %s %s %s" % (key.nick, maker_nick, body, key.pubkey_hex, sig)))
    return lines


def junk_flood(target: str, spoofed: list[tuple[str, str]], n: int) -> list[str]:
    """``n`` badly signed privmsgs to target: under spoofed (nick, pubkey) pairs, else random."""
    lines = []
    cmds = ("ioauth", "sig", "pubkey", "error")
    for i in range(n):
        if spoofed and i % 4 != 3:
            nick, pub = spoofed[i % len(spoofed)]
        else:
            nick, pub = flood_nick("jk", i), "02" + os.urandom(32).hex()
        cmd = cmds[i % 4]
        if cmd == "pubkey":
            body = os.urandom(32).hex()                      # well-formed, just not signed
        elif cmd == "error":
            body = "junk %d" % i
        else:
            body = base64.b64encode(os.urandom(60)).decode()
        sig = base64.b64encode(b"\x30" + os.urandom(69)).decode()
        lines.append(wire.encode_onion_line(
            685, "%s!%s!%s %s %s %s" % (nick, target, cmd, body, pub, sig)))
    return lines


# ---------------------------------------------------------------------------------- the process

class Flooder:
    def __init__(self, host: str, port: int, network: str = "testnet"):
        from electrum_joinmarket.protocol.nick import NickKey
        self.key = NickKey()
        self.nick = self.key.nick
        self.host, self.port, self.network = host, port, network
        self.makers: dict[str, str] = {}          # nick -> pubkey (from signed offer replies)
        self.takers: list[str] = []               # nicks that sent !orderbook
        self.sent = 0
        self.writer = None
        self._tasks: set[asyncio.Future] = set()  # readers, kept referenced until they end

    async def connect(self):
        reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=2 ** 22)
        self.send(wire.encode_onion_line(793, wire.client_handshake(
            self.nick, "NOT-SERVING-ONION", self.network)))
        self._keep(asyncio.ensure_future(self._read(reader)))

    def _keep(self, task: asyncio.Future) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def send(self, line: str, writer=None) -> None:
        w = writer or self.writer
        assert w is not None, "connect() first"
        w.write(line.encode() + b"\r\n")
        self.sent += 1

    async def connection(self):
        """Another connection to the directory (each flood its own, as an attacker would)."""
        from electrum_joinmarket.protocol.nick import NickKey
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=2 ** 22)
        self.send(wire.encode_onion_line(793, wire.client_handshake(
            NickKey().nick, "NOT-SERVING-ONION", self.network)), writer)

        async def discard():
            while await reader.read(65536):
                pass
        self._keep(asyncio.ensure_future(discard()))
        return writer

    async def send_all(self, lines: list[str], per_second: float = 0) -> None:
        await self.send_lines(await self.connection(), lines, per_second)

    async def send_lines(self, writer, lines: list[str], per_second: float = 0) -> None:
        for i, line in enumerate(lines):
            self.send(line, writer)
            if i % 500 == 499:
                await writer.drain()
                if per_second:
                    await asyncio.sleep(500 / per_second)
        await writer.drain()

    async def _read(self, reader):
        while True:
            raw = await reader.readline()
            if not raw:
                return
            try:
                msgtype, text = wire.decode_onion_line(raw.strip())
            except (ValueError, UnicodeDecodeError):
                continue
            parts = text.split("!", 2)
            if len(parts) < 3:
                continue
            frm, to, msg = parts
            if msgtype == 687 and msg == "orderbook" and not frm.startswith("J5ob"):
                if frm not in self.takers:
                    self.takers.append(frm)
            elif msgtype == 685 and to == self.nick:
                tokens = msg.split(" ")
                if len(tokens) >= 3 and tokens[0].split(" ")[0] in (
                        "sw0reloffer", "sw0absoffer", "swreloffer", "swabsoffer"):
                    if wire.nick_matches_pubkey(frm, tokens[-2]):
                        self.makers[frm] = tokens[-2]

    async def learn_makers(self, expected: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.makers) < expected and time.monotonic() < deadline:
            self.send(wire.encode_onion_line(687, self.nick + "!PUBLIC!orderbook"))
            await asyncio.sleep(2)

    async def wait_taker(self, timeout: float = 600.0) -> str | None:
        deadline = time.monotonic() + timeout
        while not self.takers and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return self.takers[-1] if self.takers else None


async def run_plan(host: str, port: int, plan: dict) -> dict:
    """A plan: {"makers": n expected, "fill_target": index or null, "fill_bursts": [n, ...],
    "fill_every": s, "offers": [nicks, offers], "orderbook": n, "junk": n, "junk_rate": per s}."""
    f = Flooder(host, port, plan.get("network", "testnet"))
    await f.connect()
    await f.learn_makers(plan.get("makers", 0))
    makers = sorted(f.makers)
    print("flood: learnt %d makers" % len(makers), flush=True)
    tasks = []
    if plan.get("orderbook"):
        tasks.append(asyncio.ensure_future(f.send_all(orderbook_flood(plan["orderbook"]),
                                                      plan.get("orderbook_rate", 0))))
    if plan.get("fill_bursts") and makers:
        target = makers[plan.get("fill_target", 0) % len(makers)]
        keys = fill_keys(max(plan["fill_bursts"]))

        async def fills():
            for n in plan["fill_bursts"]:
                await f.send_all(fill_flood(keys[:n], target))
                await asyncio.sleep(plan.get("fill_every", 5))
        tasks.append(asyncio.ensure_future(fills()))
    # made before the taker shows up, so that they hit it while it collects offers
    offers = offer_flood(*plan["offers"]) if plan.get("offers") else []
    marker = "J5TAKERTAKERTAKE"
    junk = junk_flood(marker, list(f.makers.items()), plan["junk"]) if plan.get("junk") else []
    offer_conn = await f.connection() if offers else None
    junk_conn = await f.connection() if junk else None
    print("flood: ready", flush=True)
    taker = await f.wait_taker(plan.get("taker_timeout", 600))
    print("flood: taker %s" % taker, flush=True)
    if taker and offers:
        tasks.append(asyncio.ensure_future(f.send_lines(offer_conn, offers)))
    if taker and junk:
        junk = [line.replace(marker, taker) for line in junk]
        tasks.append(asyncio.ensure_future(f.send_lines(junk_conn, junk,
                                                        plan.get("junk_rate", 0))))
    await asyncio.gather(*tasks)
    print("flood: done, %d lines sent" % f.sent, flush=True)
    return {"sent": f.sent, "makers": makers, "taker": taker}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--directory", required=True, help="HOST:PORT of a relaying directory")
    ap.add_argument("--plan", required=True, help="JSON plan (see run_plan)")
    args = ap.parse_args(argv)
    host, port = args.directory.rsplit(":", 1)
    plan = json.loads(args.plan)
    asyncio.run(run_plan(host, int(port), plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
