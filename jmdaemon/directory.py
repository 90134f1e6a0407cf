"""A directory node for the onion message channel (docs/protocol.md §3.3, §3.4), hardened like NG's:

* accepts a 793 handshake iff app-name, proto-ver 5, directory false, same network, a valid
  location, and the nick is not already connected; replies 795 with ``accepted`` true/false;
* binds each nick to its connection: a pubmsg/privmsg whose ``from`` is not the connection's nick
  is dropped (the Ref directory relays such spoofs, §13);
* relays pubmsgs to every other handshaked peer, privmsgs to the addressed nick (then tells the
  recipient where the sender serves), announces departures as ``nick;loc;D``;
* always answers 791 getpeerlist with a peerlist (20 entries per line, as NG; an empty line when
  no peer serves an onion — joinmarket-ng clients wait up to 120 s for that answer otherwise) and
  announces ``peerlist_features`` to clients that announce it (joinmarket-ng); reference clients
  never send 791 and get the reference's exact handshake reply; drops any other type;
* per-connection token-bucket rate limit and a connection cap.

Test mode listens on 127.0.0.1 without Tor; otherwise its onion service is published through
Tor's control port (``ADD_ONION`` with a key kept in ``hidden_service_dir``, so the address
survives restarts) and, like joinmarket-ng directories, it accepts only peers announcing a v3
onion location or ``NOT-SERVING-ONION``.
"""
import logging
import os
import random
import time

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint

from jmcore import constants as C
from jmcore.channels import is_onion_host, network_for_wire

from . import wire
from .channels.onion_proto import OnionLineFactory

log = logging.getLogger(__name__)
DIRECTORY_FEATURES = {"peerlist_features": True}
"""Announced in our 795: joinmarket-ng clients then know we answer GETPEERLIST (reference clients
ignore ``features``)."""


def random_directory_nick():
    """A nick-shaped name for the directory (directories never sign anything)."""
    body = "".join(random.SystemRandom().choice(wire.B58_ALPHABET) for _ in range(C.NICK_MAX_ENCODED))
    return C.JOINMARKET_NICK_HEADER + str(C.JM_VERSION) + body


class _PeerState:
    def __init__(self, rate, burst):
        self.nick = None
        self.location = None
        self.handshaked = False
        self.tokens = burst
        self.stamp = time.monotonic()
        self.rate = rate
        self.burst = burst
        self.warned = False

    def allow(self):
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class DirectoryNode:
    def __init__(self, network="mainnet", host="127.0.0.1", port=C.ONION_SERVING_PORT, nick=None,
                 motd="JoinMarket directory node (jmdaemon)", test_mode=True, max_peers=5000,
                 rate=200.0, burst=2000, hidden_service_dir=None, tor_control_host="localhost",
                 tor_control_port=9051, tor_control_password=None):
        self.network = network_for_wire(network)
        self.host = host
        self.port = port
        self.nick = nick or random_directory_nick()
        self.motd = motd
        self.test_mode = test_mode
        self.max_peers = max_peers
        self.rate = rate
        self.burst = burst
        self.hidden_service_dir = hidden_service_dir
        self.tor_control = (tor_control_host, tor_control_port, tor_control_password)
        self.location = None
        self.onion_service = None
        self.listener = None
        self.conns = {}          # conn -> _PeerState
        self.by_nick = {}        # nick -> conn
        self.stats = {"relayed_pub": 0, "relayed_priv": 0, "dropped": 0, "rejected": 0}

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        """Deferred firing with the location string once listening (and published)."""
        ep = TCP4ServerEndpoint(reactor, self.port, interface=self.host)
        d = ep.listen(OnionLineFactory(self))

        def listening(port):
            self.listener = port
            self.port = port.getHost().port
            if self.test_mode:
                self.location = "127.0.0.1:%d" % self.port
                return self.location
            return defer.ensureDeferred(self._publish())
        return d.addCallback(listening)

    async def _publish(self):
        from .tor.control import publish_onion
        host, port, password = self.tor_control
        hs_dir = self.hidden_service_dir or os.path.abspath("hidden_service")
        os.makedirs(hs_dir, mode=0o700, exist_ok=True)
        self.onion_service = await publish_onion(reactor, host, port, self.host, self.port,
                                                 virtual_port=C.ONION_SERVING_PORT,
                                                 password=password, hs_dir=hs_dir)
        self.location = "%s:%d" % (self.onion_service.hostname, C.ONION_SERVING_PORT)
        return self.location

    def stop(self):
        log.info("directory stats: %s", " ".join("%s=%d" % kv for kv in sorted(self.stats.items())))
        for conn in list(self.conns):
            conn.close()
        if self.onion_service is not None:
            service, self.onion_service = self.onion_service, None
            service.remove()
        if self.listener is not None:
            d = self.listener.stopListening()
            self.listener = None
            return d
        return defer.succeed(None)

    # ------------------------------------------------------------------ connections
    def on_connection_made(self, conn):
        if len(self.conns) >= self.max_peers:
            log.info("directory full; connection refused")
            conn.close()
            return
        self.conns[conn] = _PeerState(self.rate, self.burst)

    def on_connection_lost(self, conn):
        state = self.conns.pop(conn, None)
        if state is None or not state.handshaked:
            return
        if self.by_nick.get(state.nick) is conn:
            del self.by_nick[state.nick]
            entry = wire.format_peerlist([(state.nick, state.location, True)])
            for other, ostate in self.conns.items():
                if ostate.handshaked:
                    other.send(C.ONION_TYPE_PEERLIST, entry)

    def on_line(self, conn, msgtype, text):
        state = self.conns.get(conn)
        if state is None:
            return
        if not state.allow():
            self.stats["dropped"] += 1
            if not state.warned:
                state.warned = True
                log.info("rate limit hit by %s; dropping its excess lines", state.nick)
            return
        if msgtype == C.ONION_TYPE_HANDSHAKE:
            self._handshake(conn, state, text)
        elif not state.handshaked:
            self.stats["dropped"] += 1
            log.debug("type %d before handshake dropped", msgtype)
        elif msgtype == C.ONION_TYPE_PUBMSG:
            self._pubmsg(conn, state, text)
        elif msgtype == C.ONION_TYPE_PRIVMSG:
            self._privmsg(conn, state, text)
        elif msgtype == C.ONION_TYPE_GETPEERLIST:
            self._send_peerlist(conn)
        else:
            self.stats["dropped"] += 1
            log.info("onion message type %d from %s not in the whitelist; dropped", msgtype,
                     state.nick)

    def _handshake(self, conn, state, text):
        if state.handshaked:
            return
        try:
            hs = wire.parse_client_handshake(text)
        except ValueError as exc:
            log.info("malformed handshake (%s); closing", exc)
            conn.close()
            return
        nick = hs["nick"]
        location = hs["location-string"]
        problems = []
        if hs["app-name"] != C.APP_NAME or hs["proto-ver"] != C.JM_VERSION:
            problems.append("app %s protocol %s" % (wire.printable(hs["app-name"], 20),
                                                   hs["proto-ver"]))
        if hs["directory"] is not False:
            problems.append("claims to be a directory")
        if hs["network"] != self.network:
            problems.append("network %s, not %s" % (wire.printable(hs["network"], 20),
                                                   self.network))
        if not wire.valid_location(location) or (
                not self.test_mode and location != C.NOT_SERVING_ONION
                and not is_onion_host(location.rpartition(":")[0])):
            problems.append("location %s" % wire.printable(location, 80))
        if nick == self.nick or nick in self.by_nick:
            problems.append("nick already connected")
        accepted = not problems
        # joinmarket-ng clients announce peerlist_features and look for it in our answer; a
        # reference client gets the reference's exact reply (empty features)
        theirs = hs.get("features")
        features = DIRECTORY_FEATURES if isinstance(theirs, dict) and theirs.get(
            "peerlist_features") else None
        conn.send(C.ONION_TYPE_DN_HANDSHAKE,
                  wire.directory_handshake(self.nick, self.network, accepted, self.motd,
                                           features=features))
        if not accepted:
            self.stats["rejected"] += 1
            log.info("handshake from %s refused: %s", nick, "; ".join(problems))
            return
        state.handshaked = True
        state.nick = nick
        state.location = hs["location-string"]
        self.by_nick[nick] = conn
        log.debug("peer %s handshaked (%s)", nick, state.location)

    def _pubmsg(self, conn, state, text):
        try:
            from_nick, to_nick, _ = wire.split_onion_message(text)
        except ValueError:
            self.stats["dropped"] += 1
            return
        if from_nick != state.nick or to_nick != "PUBLIC":
            self.stats["dropped"] += 1
            log.info("pubmsg from %s claiming sender %s dropped", state.nick,
                     wire.printable(from_nick, 20))
            return
        self.stats["relayed_pub"] += 1
        for other, ostate in self.conns.items():
            if other is not conn and ostate.handshaked:
                other.send(C.ONION_TYPE_PUBMSG, text)

    def _privmsg(self, conn, state, text):
        try:
            from_nick, to_nick, _ = wire.split_onion_message(text)
        except ValueError:
            self.stats["dropped"] += 1
            return
        if from_nick != state.nick:
            self.stats["dropped"] += 1
            log.info("privmsg from %s claiming sender %s dropped", state.nick,
                     wire.printable(from_nick, 20))
            return
        target = self.by_nick.get(to_nick)
        if target is None:
            self.stats["dropped"] += 1
            return
        self.stats["relayed_priv"] += 1
        target.send(C.ONION_TYPE_PRIVMSG, text)
        # as Ref: the directory's own entry, then the sender's if it serves
        entries = [(self.nick, self.location or C.NOT_SERVING_ONION, False)]
        if state.location != C.NOT_SERVING_ONION:
            entries.append((state.nick, state.location, False))
        target.send(C.ONION_TYPE_PEERLIST, wire.format_peerlist(entries))

    def _send_peerlist(self, conn):
        """Always answer: the serving peers, 20 per line, or one empty peerlist."""
        requester = self.conns.get(conn)
        entries = [(s.nick, s.location, False) for c, s in self.conns.items()
                   if s.handshaked and s.location != C.NOT_SERVING_ONION and c is not conn]
        for i in range(0, len(entries), 20):
            conn.send(C.ONION_TYPE_PEERLIST, wire.format_peerlist(entries[i:i + 20]))
        if not entries:
            conn.send(C.ONION_TYPE_PEERLIST, "")
        log.debug("peerlist of %d serving peer(s) sent to %s", len(entries),
                  requester.nick if requester else "?")
