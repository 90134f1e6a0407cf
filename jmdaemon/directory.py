"""A directory node for the onion message channel (docs/protocol.md §3.3, §3.4), hardened like NG's:

* accepts a 793 handshake iff app-name, proto-ver 5, directory false, same network, a valid
  location, and the nick is not already connected; replies 795 with ``accepted`` true/false;
* binds each nick to its connection: a pubmsg/privmsg whose ``from`` is not the connection's nick
  is dropped (the Ref directory relays such spoofs, §13);
* relays pubmsgs to every other handshaked peer, privmsgs to the addressed nick (then tells the
  recipient where the sender serves), announces departures as ``nick;loc;D``;
* answers 791 getpeerlist (20 entries per line, as NG); drops any other type (797/799/801 ...);
* per-connection token-bucket rate limit and a connection cap.

Test mode listens on 127.0.0.1 without Tor; otherwise a persistent onion service is published
through Tor's control port (``hidden_service_dir``).
"""
import logging
import os
import random
import time

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint

from . import constants as C
from . import wire
from .channels.onion_proto import OnionLineFactory

log = logging.getLogger(__name__)
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def random_directory_nick():
    """A nick-shaped name for the directory (directories never sign anything)."""
    body = "".join(random.SystemRandom().choice(_B58) for _ in range(C.NICK_MAX_ENCODED))
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
    def __init__(self, network="mainnet", host="127.0.0.1", port=5222, nick=None,
                 motd="JoinMarket directory node (jmdaemon)", test_mode=True, max_peers=5000,
                 rate=200.0, burst=2000, hidden_service_dir=None, tor_control_host="localhost",
                 tor_control_port=9051, tor_control_password=None):
        self.network = C.network_for_wire(network)
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
        import txtorcon
        host, port, password = self.tor_control
        tor = await txtorcon.connect(reactor, TCP4ClientEndpoint(reactor, host, port),
                                     password_function=(lambda: password) if password else None)
        hs_dir = self.hidden_service_dir or os.path.abspath("hidden_service")
        os.makedirs(hs_dir, mode=0o700, exist_ok=True)
        service = await tor.create_filesystem_onion_service(
            [(C.ONION_VIRTUAL_PORT, "%s:%d" % (self.host, self.port))], hs_dir, version=3)
        self.location = "%s:%d" % (service.hostname, C.ONION_VIRTUAL_PORT)
        return self.location

    def stop(self):
        log.info("directory stats: %s", " ".join("%s=%d" % kv for kv in sorted(self.stats.items())))
        for conn in list(self.conns):
            conn.close()
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
                    other.send(C.ONION_PEERLIST, entry)

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
        if msgtype == C.ONION_HANDSHAKE:
            self._handshake(conn, state, text)
        elif not state.handshaked:
            self.stats["dropped"] += 1
            log.debug("type %d before handshake dropped", msgtype)
        elif msgtype == C.ONION_PUBMSG:
            self._pubmsg(conn, state, text)
        elif msgtype == C.ONION_PRIVMSG:
            self._privmsg(conn, state, text)
        elif msgtype == C.ONION_GETPEERLIST:
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
        accepted = (hs["app-name"] == C.APP_NAME and hs["proto-ver"] == C.JM_VERSION
                    and hs["directory"] is False and hs["network"] == self.network
                    and wire.valid_location(hs["location-string"])
                    and nick != self.nick and nick not in self.by_nick)
        conn.send(C.ONION_DN_HANDSHAKE,
                  wire.directory_handshake(self.nick, self.network, accepted, self.motd))
        if not accepted:
            self.stats["rejected"] += 1
            log.info("handshake from %s refused", nick)
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
                other.send(C.ONION_PUBMSG, text)

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
        target.send(C.ONION_PRIVMSG, text)
        # as Ref: the directory's own entry, then the sender's if it serves
        entries = [(self.nick, self.location or C.NOT_SERVING_ONION, False)]
        if state.location != C.NOT_SERVING_ONION:
            entries.append((state.nick, state.location, False))
        target.send(C.ONION_PEERLIST, wire.format_peerlist(entries))

    def _send_peerlist(self, conn):
        entries = [(s.nick, s.location, False) for s in self.conns.values()
                   if s.handshaked and s.location != C.NOT_SERVING_ONION]
        for i in range(0, len(entries), 20):
            conn.send(C.ONION_PEERLIST, wire.format_peerlist(entries[i:i + 20]))
