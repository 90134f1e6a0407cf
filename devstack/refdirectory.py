"""A directory node that behaves like the reference's (joinmarket-clientserver 0.9.12) for floods:
it relays whatever its peers send, under any sender name (docs/protocol.md §3.4: ``from_nick`` is
not checked against the connection). On the live network nicks cost nothing and these
directories relay anything, so this is how a flood reaches a taker or a maker; our own directory
node (``jmdaemon --directory-node``) binds nicks to connections and would stop most of it.

Relay rules (Ref): a 793 handshake with app-name joinmarket, proto-ver 5, directory false and our
network is answered with a 795 ``accepted``; a pubmsg (687) goes to every other handshaked peer
except one whose nick is the message's sender; a privmsg (685) goes to the addressed nick if it is
connected, followed by a peerlist telling it the directory's and (if it serves) the sender's
location; a peer that leaves is announced as ``nick;location;D``.

Run as a process (the floods must not share a CPU-bound event loop with the parties)::

    python -m devstack.refdirectory --port 0 --network testnet
    -> prints "refdirectory <nick> at 127.0.0.1:<port>"
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys

from jmdaemon import wire
from jmdaemon.directory import random_directory_nick


class Peer:
    __slots__ = ("writer", "nick", "location")

    def __init__(self, writer):
        self.writer = writer
        self.nick = None
        self.location = None


class RefDirectory:
    def __init__(self, network="testnet", nick=None):
        self.network = network
        self.nick = nick or random_directory_nick()
        self.location = None
        self.peers: dict[asyncio.StreamWriter, Peer] = {}
        self.by_nick: dict[str, Peer] = {}
        self.relayed = 0

    async def start(self, port=0):
        server = await asyncio.start_server(self._conn, "127.0.0.1", port, limit=2 ** 20)
        self.location = "127.0.0.1:%d" % server.sockets[0].getsockname()[1]
        return server

    @staticmethod
    def _line(msgtype, text):
        return (wire.encode_onion_line(msgtype, text) + "\r\n").encode()

    async def _conn(self, reader, writer):
        peer = self.peers[writer] = Peer(writer)
        try:
            while True:
                raw = await reader.readline()
                if not raw:
                    break
                try:
                    msgtype, text = wire.decode_onion_line(raw.strip())
                except (ValueError, UnicodeDecodeError):
                    break                                  # Ref drops the connection
                await self._handle(peer, msgtype, text, raw)
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self.peers.pop(writer, None)
            if peer.nick is not None and self.by_nick.get(peer.nick) is peer:
                del self.by_nick[peer.nick]
                gone = self._line(789, wire.format_peerlist([(peer.nick, peer.location, True)]))
                for other in list(self.peers.values()):
                    if other.nick is not None:
                        other.writer.write(gone)
            writer.close()

    async def _handle(self, peer, msgtype, text, raw):
        if msgtype == 793:
            try:
                hs = json.loads(text)
                ok = (hs.get("app-name") == "joinmarket" and hs.get("proto-ver") == 5
                      and hs.get("directory") is False and hs.get("network") == self.network)
                nick, loc = hs["nick"], hs["location-string"]
            except (ValueError, KeyError, TypeError, AttributeError):
                return
            peer.writer.write(self._line(795, wire.directory_handshake(self.nick, self.network,
                                                                       bool(ok), "ref-like")))
            if ok:
                peer.nick, peer.location = nick, loc
                self.by_nick[nick] = peer
            return
        if peer.nick is None:
            return
        if msgtype == 687:
            from_nick = text.split("!", 1)[0]
            for other in list(self.peers.values()):
                if other is not peer and other.nick is not None and other.nick != from_nick:
                    other.writer.write(raw if raw.endswith(b"\r\n") else raw + b"\r\n")
                    self.relayed += 1
            await self._drain_some()
        elif msgtype == 685:
            parts = text.split("!", 2)
            if len(parts) != 3:
                return
            target = self.by_nick.get(parts[1])
            if target is None:
                return
            target.writer.write(raw if raw.endswith(b"\r\n") else raw + b"\r\n")
            entries = [(self.nick, self.location, False)]
            if peer.location and peer.location != "NOT-SERVING-ONION" and parts[0] == peer.nick:
                entries.append((peer.nick, peer.location, False))
            target.writer.write(self._line(789, wire.format_peerlist(entries)))
            self.relayed += 1
            await self._drain_some()

    async def _drain_some(self):
        """Like Ref's Twisted transports, never wait for a slow reader (its data is buffered
        here); only yield now and then so that every connection is served."""
        if self.relayed % 200 == 0:
            await asyncio.sleep(0)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--network", default="testnet")
    args = ap.parse_args(argv)

    async def run():
        d = RefDirectory(args.network)
        server = await d.start(args.port)
        print("refdirectory %s at %s" % (d.nick, d.location), flush=True)
        async with server:
            await server.serve_forever()
    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
