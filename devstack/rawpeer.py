"""Raw, hostile network peers for system tests: an onion-line peer and an IRC client that send
whatever they are told (no validation), over plain TCP on 127.0.0.1."""
from __future__ import annotations

import asyncio
import json

from jmdaemon import wire


class RawOnionPeer:
    def __init__(self, nick, location="NOT-SERVING-ONION", network="testnet"):
        self.nick = nick
        self.location = location
        self.network = network
        self.reader = self.writer = None
        self.received: list[tuple[int, str]] = []
        self._task = None

    async def connect(self, port, handshake=True):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self._task = asyncio.ensure_future(self._read())
        if handshake:
            self.send(793, wire.client_handshake(self.nick, self.location, self.network))
        return self

    async def _read(self):
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    return
                try:
                    self.received.append(wire.decode_onion_line(line.strip()))
                except ValueError:
                    self.received.append((-1, line.decode(errors="replace")))
        except (ConnectionError, asyncio.CancelledError):
            return

    def send(self, msgtype, line):
        self.writer.write((wire.encode_onion_line(msgtype, line) + "\r\n").encode())

    def send_raw(self, data: bytes):
        self.writer.write(data)

    async def drain(self):
        try:
            await self.writer.drain()
        except ConnectionError:
            pass

    def closed(self):
        return self._task is not None and self._task.done()

    async def wait_handshake(self, timeout=10):
        for _ in range(int(timeout * 20)):
            if any(t in (793, 795) for t, _ in self.received):
                return [json.loads(l) for t, l in self.received if t in (793, 795)][0]
            await asyncio.sleep(0.05)
        raise AssertionError("no handshake reply")

    def close(self):
        if self.writer is not None:
            self.writer.close()
        if self._task is not None:
            self._task.cancel()


class RawIRC:
    def __init__(self, nick):
        self.nick = nick
        self.lines: list[str] = []

    async def connect(self, host, port, channel="#joinmarket-pit-test"):
        self.reader, self.writer = await asyncio.open_connection(host, port)
        self.task = asyncio.ensure_future(self._read())
        self.send("NICK %s" % self.nick)
        self.send("USER %s 0 * :x" % self.nick)
        for _ in range(200):
            if any(" 001 " in l for l in self.lines):
                break
            await asyncio.sleep(0.05)
        self.send("JOIN %s" % channel)
        return self

    async def _read(self):
        while True:
            line = await self.reader.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip("\r\n")
            self.lines.append(text)
            if text.startswith("PING"):
                self.send("PONG" + text[4:])

    def send(self, line):
        self.writer.write((line + "\r\n").encode())

    def close(self):
        self.writer.close()
        self.task.cancel()
