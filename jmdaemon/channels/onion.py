"""The onion message channel (docs/protocol.md §3): connections to directory nodes plus direct links
to serving peers, JSON lines, handshakes, peerlists and routing.

Test mode (Ref ``regtest_count`` other than ``0,0``, or ``test_mode: true``): plain TCP on
127.0.0.1 instead of Tor; a serving node listens on ``onion_serving_port`` and advertises
``127.0.0.1:<port>``. Otherwise every connection goes through Tor's SOCKS port (txtorcon) and a
serving node publishes an ephemeral onion service through Tor's control port.

hostid for signatures is always ``onion-network``. Only whitelisted wire types are processed
(685, 687, 789, 793, 795); anything else (797/799/801 ...) is dropped with a log line (D3).
"""
import logging
import random

from twisted.application.internet import ClientService
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint

from .. import constants as C
from .. import wire
from .base import MessageChannel
from .onion_proto import OnionLineFactory

log = logging.getLogger(__name__)


class OnionConfigError(ValueError):
    pass


def _truthy(value):
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes", "on")


def is_test_mode(config):
    if "test_mode" in config:
        return _truthy(config["test_mode"])
    rc = str(config.get("regtest_count", "0,0")).replace(" ", "")
    return rc not in ("0,0", "", "None")


def parse_location(location):
    host, sep, port = str(location).strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not (0 < int(port) < 65536):
        raise OnionConfigError("bad location %r (want host:port)" % location)
    return host, int(port)


def directory_backoff(base=4.0):
    """Ref's directory reconnect backoff: base*1.5^k s (k <= 20, <= 8 867 s) + jitter -1..+5 s."""
    def policy(attempt):
        delay = min(base * 1.5 ** min(attempt, 20), 8867.0)
        return max(0.5, delay + random.uniform(-1.0, 5.0) * (base / 4.0))
    return policy


class DirectoryLink:
    def __init__(self, location):
        self.location = location
        self.host, self.port = parse_location(location)
        self.service = None
        self.conn = None
        self.handshaked = False
        self.nick = None
        self.seen = set()      # nicks that delivered traffic through this directory


class Peer:
    def __init__(self, nick, location=None):
        self.nick = nick
        self.location = location
        self.conn = None
        self.handshaked = False
        self.connecting = False
        self.directories = set()   # directory locations that listed this nick


class OnionMessageChannel(MessageChannel):
    kind = "onion"
    hostid = C.ONION_HOSTID

    def __init__(self, config, network="mainnet"):
        super().__init__()
        self.config = config
        self.network = C.network_for_wire(config.get("btcnet", network))
        self.test_mode = is_test_mode(config)
        dns = config.get("directory_nodes", "")
        if isinstance(dns, str):
            dns = [d.strip() for d in dns.split(",") if d.strip()]
        if not dns:
            raise OnionConfigError("onion channel needs directory_nodes")
        self.directories = {}
        for loc in dns:
            link = DirectoryLink(loc)
            self.directories[link.location] = link
        self.serving = _truthy(config.get("serving", False))
        self.passive = _truthy(config.get("passive", False))
        self.socks5_host = str(config.get("socks5_host", "localhost"))
        self.socks5_port = int(config.get("socks5_port", 9050))
        self.tor_control_host = str(config.get("tor_control_host", "localhost"))
        self.tor_control_port = int(config.get("tor_control_port", 9051))
        self.tor_control_password = config.get("tor_control_password") or None
        self.onion_serving_host = str(config.get("onion_serving_host", "127.0.0.1"))
        self.onion_serving_port = int(config.get("onion_serving_port", 8080))
        self.welcome_timeout = float(config.get("welcome_timeout", 62))
        self.reconnect_base = float(config.get("reconnect_base", 4.0))
        self.max_peers = int(config.get("max_peers", 2000))
        self.location = C.NOT_SERVING_ONION
        self.peers = {}                # nick -> Peer
        self.inbound = set()           # unidentified inbound connections
        self.listener = None
        self.onion_service = None
        self.running = False
        self.up = False
        self._welcome_call = None

    # ------------------------------------------------------------------ lifecycle
    def run(self):
        if self.running:
            return
        self.running = True
        if self.serving:
            d = self._start_serving()
            d.addCallbacks(lambda _: self._connect_directories(), self._serving_failed)
        else:
            self._connect_directories()

    def _serving_failed(self, failure):
        log.error("could not start serving on the onion channel (%s); continuing as a "
                  "non-serving peer", failure.getErrorMessage())
        self.location = C.NOT_SERVING_ONION
        self._connect_directories()

    def _start_serving(self):
        from twisted.internet import defer
        factory = OnionLineFactory(self)
        if self.test_mode:
            ep = TCP4ServerEndpoint(reactor, self.onion_serving_port,
                                    interface=self.onion_serving_host)
            d = ep.listen(factory)

            def listening(port):
                self.listener = port
                self.location = "127.0.0.1:%d" % port.getHost().port
                log.info("onion channel (test mode) serving on %s", self.location)
            return d.addCallback(listening)
        return defer.ensureDeferred(self._start_onion_service(factory))

    async def _start_onion_service(self, factory):
        import txtorcon
        from twisted.internet import defer
        ep = TCP4ServerEndpoint(reactor, self.onion_serving_port, interface=self.onion_serving_host)
        self.listener = await ep.listen(factory)
        control = TCP4ClientEndpoint(reactor, self.tor_control_host, self.tor_control_port)
        tor = await txtorcon.connect(reactor, control, password_function=(
            (lambda: self.tor_control_password) if self.tor_control_password else None))
        local = "%s:%d" % (self.onion_serving_host, self.listener.getHost().port)
        service = await tor.create_onion_service([(C.ONION_VIRTUAL_PORT, local)], version=3,
                                                 await_all_uploads=False)
        self.onion_service = (tor, service)
        self.location = "%s:%d" % (service.hostname, C.ONION_VIRTUAL_PORT)
        log.info("onion channel serving at %s", self.location)
        return defer.succeed(None)

    def _client_endpoint(self, host, port):
        if self.test_mode:
            return TCP4ClientEndpoint(reactor, host, port, timeout=30)
        from txtorcon.socks import TorSocksEndpoint
        proxy = TCP4ClientEndpoint(reactor, self.socks5_host, self.socks5_port, timeout=60)
        return TorSocksEndpoint(proxy, host, port)

    def _connect_directories(self):
        if not self.running:
            return
        for link in self.directories.values():
            log.info("connecting to directory %s", link.location)
            link.service = ClientService(self._client_endpoint(link.host, link.port),
                                         OnionLineFactory(self, link),
                                         retryPolicy=directory_backoff(self.reconnect_base))
            link.service.startService()
        self._welcome_call = reactor.callLater(self.welcome_timeout, self._welcome_timeout)

    def _welcome_timeout(self):
        self._welcome_call = None
        if not self.up and any(l.handshaked for l in self.directories.values()):
            self._set_up()

    def _check_up(self):
        if self.up:
            return
        if all(l.handshaked for l in self.directories.values()):
            self._set_up()

    def _set_up(self):
        self.up = True
        if self._welcome_call is not None and self._welcome_call.active():
            self._welcome_call.cancel()
        self._welcome_call = None
        self._emit("on_welcome")

    def shutdown(self):
        self.running = False
        if self._welcome_call is not None and self._welcome_call.active():
            self._welcome_call.cancel()
        for link in self.directories.values():
            if link.service is not None:
                link.service.stopService()
                link.service = None
            if link.conn is not None:
                link.conn.close()
        for peer in self.peers.values():
            if peer.conn is not None:
                peer.conn.close()
        for conn in list(self.inbound):
            conn.close()
        if self.listener is not None:
            self.listener.stopListening()
            self.listener = None
        if self.onion_service is not None:
            tor, service = self.onion_service
            self.onion_service = None
            try:
                service.remove()
            except Exception:
                pass

    # ------------------------------------------------------------------ connections
    def on_connection_made(self, conn):
        link = conn.link
        if isinstance(link, DirectoryLink):
            link.conn = conn
            link.handshaked = False
            conn.send(C.ONION_HANDSHAKE, self._our_handshake())
        elif isinstance(link, Peer):
            link.conn = conn
            link.connecting = False
            conn.send(C.ONION_HANDSHAKE, self._our_handshake())
        else:  # inbound
            if len(self.inbound) + len(self.peers) >= self.max_peers:
                conn.close()
                return
            self.inbound.add(conn)
            conn.send(C.ONION_HANDSHAKE, self._our_handshake())

    def on_connection_lost(self, conn):
        link = conn.link
        if isinstance(link, DirectoryLink):
            if link.conn is conn:
                link.conn = None
                was = link.handshaked
                link.handshaked = False
                link.seen = set()
                if was:
                    log.info("lost directory %s%s", link.location,
                             "; reconnecting" if self.running else "")
                    if self.up and not any(l.handshaked for l in self.directories.values()):
                        self.up = False
                        self._emit("on_disconnect")
        elif isinstance(link, Peer):
            if link.conn is conn:
                link.conn = None
                link.handshaked = False
                link.connecting = False
                self._maybe_gone(link.nick)
        else:
            self.inbound.discard(conn)

    def _our_handshake(self):
        return wire.client_handshake(self.nick, self.location, self.network)

    # ------------------------------------------------------------------ receiving
    def on_line(self, conn, msgtype, text):
        link = conn.link
        if isinstance(link, DirectoryLink):
            self._from_directory(link, conn, msgtype, text)
        else:
            self._from_peer(conn, msgtype, text)

    def _from_directory(self, link, conn, msgtype, text):
        if msgtype == C.ONION_DN_HANDSHAKE:
            self._directory_handshake(link, conn, text)
        elif not link.handshaked:
            log.debug("type %d from %s before its handshake dropped", msgtype, link.location)
        elif msgtype == C.ONION_PEERLIST:
            self._peerlist(link, text)
        elif msgtype in (C.ONION_PRIVMSG, C.ONION_PUBMSG):
            self._jm_message(conn, msgtype, text, via_directory=link)
        else:
            log.info("onion message type %d from directory %s not in the whitelist; dropped",
                     msgtype, link.location)

    def _directory_handshake(self, link, conn, text):
        if link.handshaked:
            log.debug("repeated dn-handshake from %s ignored", link.location)
            return
        try:
            hs = wire.parse_directory_handshake(text)
        except ValueError as exc:
            log.warning("bad dn-handshake from %s (%s); disconnecting", link.location, exc)
            conn.close()
            return
        if hs["network"] != self.network:
            log.warning("directory %s is on network %s, not %s; ignored", link.location,
                        wire.printable(hs["network"], 20), self.network)
            return
        if (hs["app-name"] != C.APP_NAME or not hs["directory"] or not hs["accepted"]
                or not hs["proto-ver-min"] <= C.JM_VERSION <= hs["proto-ver-max"]):
            log.warning("directory %s refused or incompatible handshake; disconnecting",
                        link.location)
            conn.close()
            return
        link.handshaked = True
        link.nick = hs["nick"]
        log.info("handshake with directory %s (%s) complete", link.location,
                 wire.printable(link.nick, 64))
        if self.up:
            self._emit("on_welcome")    # a reconnection: channel is back
        else:
            self._check_up()

    def _peerlist(self, link, text):
        for nick, location, gone in wire.parse_peerlist(text)[:1000]:
            if nick == self.nick or nick == link.nick:
                continue
            if gone:
                link.seen.discard(nick)
                peer = self.peers.get(nick)
                if peer is not None:
                    peer.directories.discard(link.location)
                self._maybe_gone(nick)
                continue
            peer = self.peers.get(nick)
            if peer is None:
                if len(self.peers) >= self.max_peers:
                    continue
                peer = self.peers[nick] = Peer(nick)
            peer.directories.add(link.location)
            if location != C.NOT_SERVING_ONION:
                peer.location = location

    def _maybe_gone(self, nick):
        peer = self.peers.get(nick)
        if peer is not None and peer.handshaked:
            return
        if any(nick in l.seen for l in self.directories.values() if l.handshaked):
            return
        if peer is not None and peer.directories:
            return
        self.peers.pop(nick, None)
        self._emit("on_nick_leave", nick)

    def _from_peer(self, conn, msgtype, text):
        if msgtype == C.ONION_HANDSHAKE:
            self._peer_handshake(conn, text)
            return
        peer = conn.link if isinstance(conn.link, Peer) else None
        if peer is None or not peer.handshaked:
            log.debug("type %d from an unhandshaked peer dropped", msgtype)
            return
        if msgtype in (C.ONION_PRIVMSG, C.ONION_PUBMSG):
            self._jm_message(conn, msgtype, text, via_directory=None)
        else:
            log.info("onion message type %d from peer %s not in the whitelist; dropped",
                     msgtype, peer.nick)

    def _peer_handshake(self, conn, text):
        try:
            hs = wire.parse_client_handshake(text)
        except ValueError as exc:
            log.info("bad handshake from peer %s (%s); disconnecting", conn.describe(), exc)
            conn.close()
            return
        ok = (hs["app-name"] == C.APP_NAME and hs["directory"] is False
              and hs["proto-ver"] == C.JM_VERSION and hs["network"] == self.network
              and wire.valid_location(hs["location-string"]) and hs["nick"] != self.nick)
        if not ok:
            log.info("incompatible handshake from peer %s; disconnecting", conn.describe())
            conn.close()
            return
        nick = hs["nick"]
        link = conn.link
        if isinstance(link, Peer):          # our outbound link
            if link.handshaked:
                return
            if nick != link.nick:
                log.info("peer at %s answered as %s, not %s; disconnecting", link.location,
                         nick, link.nick)
                conn.close()
                return
            link.handshaked = True
        else:                               # inbound: bind the nick to this connection
            self.inbound.discard(conn)
            peer = self.peers.get(nick)
            if peer is None:
                if len(self.peers) >= self.max_peers:
                    conn.close()
                    return
                peer = self.peers[nick] = Peer(nick)
            if peer.conn is not None and peer.conn is not conn and peer.handshaked:
                log.info("second connection claiming nick %s dropped", nick)
                conn.close()
                return
            peer.conn = conn
            conn.link = peer
            peer.handshaked = True
            if hs["location-string"] != C.NOT_SERVING_ONION:
                peer.location = hs["location-string"]
        log.debug("direct link with %s handshaked", nick)
        self._emit("on_nick_seen", nick)

    def _jm_message(self, conn, msgtype, text, via_directory):
        try:
            from_nick, to_nick, msg = wire.split_onion_message(text)
        except ValueError:
            log.debug("malformed onion JM message dropped")
            return
        if not wire.valid_nick(from_nick) or from_nick == self.nick:
            return
        if via_directory is None:
            # a direct link: the sender name must be the one bound to the connection (D4)
            if from_nick != conn.link.nick:
                log.info("message claiming to be from %s on the link of %s dropped",
                         from_nick, conn.link.nick)
                return
        if msgtype == C.ONION_PUBMSG:
            if to_nick != "PUBLIC":
                return
            if via_directory is not None:
                via_directory.seen.add(from_nick)
            self._emit("on_pubmsg", from_nick, msg)
        else:
            if to_nick != self.nick:
                return
            if via_directory is not None:
                via_directory.seen.add(from_nick)
            self._emit("on_privmsg", from_nick, msg)

    # ------------------------------------------------------------------ sending
    def _handshaked_directories(self):
        return [l for l in self.directories.values() if l.handshaked and l.conn is not None]

    def pubmsg(self, msg):
        line = self.nick + C.COMMAND_PREFIX + "PUBLIC" + msg
        for link in self._handshaked_directories():
            link.conn.send(C.ONION_PUBMSG, line)

    def privmsg(self, nick, cmd, message):
        if nick == self.nick:
            return
        line = self.nick + C.COMMAND_PREFIX + nick + C.COMMAND_PREFIX + cmd + " " + message
        peer = self.peers.get(nick)
        if peer is not None and not self.passive and peer.location and not peer.handshaked \
                and not peer.connecting and peer.conn is None:
            self._connect_peer(peer)
        if peer is not None and peer.handshaked and peer.conn is not None:
            peer.conn.send(C.ONION_PRIVMSG, line)
            return
        dirs = self._handshaked_directories()
        preferred = [l for l in dirs if nick in l.seen]
        choice = preferred or dirs
        if not choice:
            log.warning("no directory connected; privmsg to %s not sent", nick)
            return
        random.choice(choice).conn.send(C.ONION_PRIVMSG, line)

    def _connect_peer(self, peer):
        try:
            host, port = parse_location(peer.location)
        except OnionConfigError:
            return
        if not self.test_mode and not host.endswith(".onion"):
            return
        peer.connecting = True
        d = self._client_endpoint(host, port).connect(OnionLineFactory(self, peer))

        def failed(failure):
            peer.connecting = False
            log.debug("direct connection to %s failed: %s", peer.nick, failure.getErrorMessage())
        d.addErrback(failed)
