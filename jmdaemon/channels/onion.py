"""The onion message channel (docs/protocol.md §3): connections to directory nodes plus direct links
to serving peers, JSON lines, handshakes, peerlists and routing.

Over Tor (the normal mode) every connection — directories and peers alike — goes through Tor's
SOCKS5 port (:class:`jmdaemon.tor.socks.TorSocksEndpoint`), each with its own SOCKS credentials
so tor never shares a circuit between two of them (stream isolation); there is no clearnet
fallback, and a peer location that is not a ``.onion`` is never dialled. A serving node (a maker)
publishes an ephemeral v3 onion service through Tor's control port, mapped to a listener on
127.0.0.1, and removes it when the channel shuts down; a non-serving node (a taker) announces
``NOT-SERVING-ONION``.

Test mode (Ref ``regtest_count`` other than ``0,0``, or ``test_mode: true``): plain TCP on
127.0.0.1 instead of Tor; a serving node listens on ``onion_serving_port`` and advertises
``127.0.0.1:<port>``.

Every directory has a visible state (:meth:`OnionMessageChannel.status`): ``connecting`` →
``handshaking`` → ``up``, or ``refused`` (it answered ``accepted: false``, an incompatible
handshake, or closed the connection before answering ours — logged, never silent),
``unreachable`` (Tor could not reach it: the SOCKS reply says why) or ``tor-unavailable``
(nothing usable at the SOCKS port). Failed directories are retried with the reference's
backoff, each failure logged once per change of reason.

hostid for signatures is always ``onion-network``. Only whitelisted wire types are processed
(685, 687, 789, 793, 795); anything else (797/799/801 ...) is dropped with a log line (D3).
"""
import logging
import random
import time

from twisted.application.internet import ClientService
from twisted.internet import defer, error, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint

from jmcore import constants as C
from jmcore.channels import ChannelConfigError, OnionChannelConfig
from jmcore.netaddr import is_loopback
from jmcore.torcheck import ProbeResult

from .. import limits, wire
from .base import MessageChannel
from .onion_proto import OnionLineFactory

log = logging.getLogger(__name__)

# directory states
CONNECTING, HANDSHAKING, UP = "connecting", "handshaking", "up"
REFUSED, UNREACHABLE, TOR_UNAVAILABLE, STOPPED = "refused", "unreachable", "tor-unavailable", \
    "stopped"
FAILED_STATES = (REFUSED, UNREACHABLE, TOR_UNAVAILABLE)


class OnionConfigError(ValueError):
    pass


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


def describe_failure(failure):
    """``(state, reason)`` for a failed connection attempt."""
    from ..tor.socks import SocksReplyError, SocksTimeoutError, TorUnavailableError
    exc = failure.value
    if isinstance(exc, TorUnavailableError):
        return TOR_UNAVAILABLE, exc.reason
    if isinstance(exc, SocksReplyError):
        return UNREACHABLE, "Tor: %s" % exc.reason
    if isinstance(exc, SocksTimeoutError):
        return UNREACHABLE, exc.reason
    if isinstance(exc, error.ConnectionRefusedError):
        return UNREACHABLE, "connection refused"
    if isinstance(exc, (error.TimeoutError, defer.TimeoutError)):
        return UNREACHABLE, "connection timed out"
    return UNREACHABLE, failure.getErrorMessage() or exc.__class__.__name__


class DirectoryLink:
    def __init__(self, location):
        self.location = location
        self.host, self.port = parse_location(location)
        self.service = None
        self.conn = None
        self.handshaked = False
        self.nick = None
        self.seen = set()      # nicks that delivered traffic through this directory
        self.state = CONNECTING
        self.reason = ""
        self.since = time.monotonic()
        self.attempts = 0
        self.failed_once = False
        self.next_retry = None

    def set_state(self, state, reason=""):
        changed = (state, reason) != (self.state, self.reason)
        if state != self.state:
            self.since = time.monotonic()
        self.state, self.reason = state, reason
        if state in FAILED_STATES:
            self.failed_once = True
        return changed

    def status(self):
        d = {"location": self.location, "state": self.state,
             "for_s": round(time.monotonic() - self.since, 1), "attempts": self.attempts}
        if self.reason:
            d["reason"] = self.reason
        if self.nick:
            d["nick"] = self.nick
        if self.state not in (UP, STOPPED, HANDSHAKING) and self.next_retry is not None:
            d["retry_in_s"] = max(0.0, round(self.next_retry - time.monotonic(), 1))
        elif self.state in FAILED_STATES:
            d["retrying"] = True
        return d


class Peer:
    def __init__(self, nick, location=None):
        self.nick = nick
        self.location = location
        self.conn = None
        self.handshaked = False
        self.proven = False        # a message signed by nick came over conn (or we dialled it)
        self.connecting = False
        self.directories = set()   # directory locations that listed this nick


class _TrackedEndpoint:
    """Reports each connection attempt of a directory's ClientService and its failure."""

    def __init__(self, channel, link, inner):
        self.channel, self.link, self.inner = channel, link, inner

    def connect(self, factory):
        self.channel._attempt(self.link)
        d = self.inner.connect(factory)

        def failed(failure):
            self.channel._attempt_failed(self.link, failure)
            return failure
        return d.addErrback(failed)


class OnionMessageChannel(MessageChannel):
    kind = "onion"
    hostid = C.ONION_HOSTID

    def __init__(self, config, network="mainnet"):
        """``config``: a ``chan_configs`` entry of type onion, read through the typed model the
        plugin builds it with (:class:`jmcore.channels.OnionChannelConfig`: over Tor only v3
        onion directories; test mode, plain TCP, only with ``regtest_count`` or ``test_mode``)."""
        super().__init__()
        try:
            cfg = OnionChannelConfig.from_dict(config, network)
        except ChannelConfigError as exc:
            raise OnionConfigError(str(exc)) from None
        self.config = config
        self.network = cfg.btcnet
        self.test_mode = cfg.test_mode
        self.directories = {}
        for loc in cfg.directory_nodes:
            link = DirectoryLink(loc)
            self.directories[link.location] = link
        self.serving, self.passive = cfg.serving, cfg.passive
        self.socks5_host, self.socks5_port = cfg.tor.socks5_host, cfg.tor.socks5_port
        self.tor_control_host, self.tor_control_port = cfg.tor.tor_control_host, cfg.tor.tor_control_port
        self.tor_control_password = cfg.tor.tor_control_password
        self.onion_serving_host, self.onion_serving_port = cfg.onion_serving_host, cfg.onion_serving_port
        self.hidden_service_dir = cfg.hidden_service_dir or None
        ext = cfg.extensions
        self.socks5_timeout = float(ext.get("socks5_timeout", 60))
        self.welcome_timeout = float(ext.get("welcome_timeout", 62))
        self.reconnect_base = float(ext.get("reconnect_base", 4.0))
        self.max_peers = int(ext.get("max_peers", 2000))
        self.location = C.NOT_SERVING_ONION
        self.peers = {}                # nick -> Peer
        self.inbound = set()           # unidentified inbound connections
        self.listener = None
        self.onion_service = None
        self.running = False
        self.up = False
        self._welcome_call = None
        self.tor_state = "not-used" if self.test_mode else "unknown"
        self.tor_message = ""
        self.serving_state = "publishing" if self.serving else "no"
        self.serving_message = ""
        self.failure = None            # a fatal problem of the whole channel (message)
        if not self.test_mode and not is_loopback(self.onion_serving_host) and self.serving:
            log.warning("onion_serving_host %s is not a loopback address: the onion service's "
                        "local listener is reachable from the network", self.onion_serving_host)

    # ------------------------------------------------------------------ lifecycle
    def run(self):
        if self.running:
            return
        self.running = True
        log.info("onion channel (%s, network %s): %d directory node(s)%s%s", "test mode, plain "
                 "TCP" if self.test_mode else "Tor SOCKS %s:%d" % (self.socks5_host,
                                                                  self.socks5_port),
                 self.network, len(self.directories),
                 "; serving an onion" if self.serving else "; not serving (NOT-SERVING-ONION)",
                 "; passive" if self.passive else "")
        if not self.test_mode:
            self._check_tor()
        if self.serving:
            d = self._start_serving()
            d.addCallbacks(lambda _: self._connect_directories(), self._serving_failed)
        else:
            self._connect_directories()

    def _check_tor(self):
        from ..tor.probe import probe_tor_socks
        address = "%s:%d" % (self.socks5_host, self.socks5_port)

        def done(result):
            res, detail = result
            if res == ProbeResult.TOR:
                self._set_tor("ok", "")
            else:
                from jmcore.torcheck import not_tor_message
                reason = {ProbeResult.CLOSED: "nothing listens there",
                          ProbeResult.NOT_TOR: "it is not a Tor SOCKS proxy (%s)" % detail,
                          ProbeResult.TIMEOUT: "it does not answer"}[res]
                self._set_tor("unavailable", not_tor_message(address, reason))
        probe_tor_socks(reactor, self.socks5_host, self.socks5_port).addCallback(done)

    def _set_tor(self, state, message):
        if state == self.tor_state:
            return
        self.tor_state, self.tor_message = state, message
        if state == "ok":
            log.info("Tor SOCKS proxy at %s:%d answers", self.socks5_host, self.socks5_port)
        else:
            log.error("%s", message)

    def _serving_failed(self, failure):
        from ..tor.control import TorControlError
        if not self.running:             # stopped while publishing (its control connection closed)
            log.info("onion channel stopped before its onion service was up: %s",
                     failure.getErrorMessage())
            return
        msg = failure.getErrorMessage() if failure.check(TorControlError) else (
            "could not start serving on the onion channel: %s" % failure.getErrorMessage())
        self.serving_state, self.serving_message = "failed", msg
        self.failure = msg
        log.error("onion channel: %s", msg)
        for link in self.directories.values():
            link.set_state(STOPPED, "not connected: the onion service could not be published")

    def _listen(self, factory):
        """A listener on onion_serving_host: the configured port, else any free port."""
        ep = TCP4ServerEndpoint(reactor, self.onion_serving_port, interface=self.onion_serving_host)

        def busy(failure):
            failure.trap(error.CannotListenError)
            if self.onion_serving_port == 0:
                return failure
            log.info("onion serving port %s:%d is taken; using a free port",
                     self.onion_serving_host, self.onion_serving_port)
            return TCP4ServerEndpoint(reactor, 0, interface=self.onion_serving_host).listen(factory)
        return ep.listen(factory).addErrback(busy)

    def _start_serving(self):
        factory = OnionLineFactory(self)
        if self.test_mode:
            def listening(port):
                self.listener = port
                self.location = "127.0.0.1:%d" % port.getHost().port
                self.serving_state = "up"
                log.info("onion channel (test mode) serving on %s", self.location)
            return self._listen(factory).addCallback(listening)
        return defer.ensureDeferred(self._start_onion_service(factory))

    async def _start_onion_service(self, factory):
        from ..tor.control import publish_onion
        self.listener = await self._listen(factory)
        local_port = self.listener.getHost().port
        log.info("publishing our onion service through Tor's control port %s:%d (local "
                 "%s:%d)", self.tor_control_host, self.tor_control_port,
                 self.onion_serving_host, local_port)
        started = time.monotonic()
        service = await publish_onion(reactor, self.tor_control_host, self.tor_control_port,
                                      self.onion_serving_host, local_port,
                                      virtual_port=C.ONION_SERVING_PORT,
                                      password=self.tor_control_password,
                                      hs_dir=self.hidden_service_dir)
        if not self.running:
            await service.remove()
            return
        self.onion_service = service
        self.location = "%s:%d" % (service.hostname, C.ONION_SERVING_PORT)
        self.serving_state = "up"
        log.info("onion channel serving at %s (published in %.1fs)", self.location,
                 time.monotonic() - started)

    def _client_endpoint(self, host, port, label="ejm"):
        if self.test_mode:
            return TCP4ClientEndpoint(reactor, host, port, timeout=30)
        from ..tor.socks import TorSocksEndpoint
        return TorSocksEndpoint(reactor, self.socks5_host, self.socks5_port, host, port,
                                isolate=True, timeout=self.socks5_timeout, label=label)

    def _connect_directories(self):
        if not self.running:
            return
        policy = directory_backoff(self.reconnect_base)
        for link in self.directories.values():
            log.info("connecting to directory %s", link.location)

            def retry(attempt, link=link):
                delay = policy(attempt)
                link.next_retry = time.monotonic() + delay
                if attempt >= 1:
                    log.debug("directory %s: next attempt in %.0fs", link.location, delay)
                return delay
            ep = _TrackedEndpoint(self, link, self._client_endpoint(link.host, link.port))
            link.service = ClientService(ep, OnionLineFactory(self, link), retryPolicy=retry)
            link.service.startService()
        self._welcome_call = reactor.callLater(self.welcome_timeout, self._welcome_timeout)

    def _attempt(self, link):
        link.attempts += 1
        link.next_retry = None
        if link.state not in FAILED_STATES:
            link.set_state(CONNECTING)
        # after a failure the state stays (with its reason) while we try again: a user sees
        # "unreachable, attempt 3", not a flicker between connecting and unreachable
        log.debug("directory %s: connection attempt %d%s", link.location, link.attempts,
                  "" if self.test_mode else " through Tor")

    def _attempt_failed(self, link, failure):
        if not self.running:
            return
        state, reason = describe_failure(failure)
        changed = link.set_state(state, reason)
        (log.warning if changed else log.debug)(
            "directory %s %s: %s (attempt %d)", link.location, state, reason, link.attempts)
        if state == TOR_UNAVAILABLE:
            from jmcore.torcheck import not_tor_message
            self._set_tor("unavailable", not_tor_message(
                "%s:%d" % (self.socks5_host, self.socks5_port), reason))
        elif state == UNREACHABLE and not self.test_mode and self.tor_state != "ok":
            self._set_tor("ok", "")      # Tor answered: it is there
        self._check_up()

    def _welcome_timeout(self):
        self._welcome_call = None
        if not self.up and any(l.handshaked for l in self.directories.values()):
            self._set_up()

    def _check_up(self):
        """Up when every directory is handshaked, or (faster than Ref's 62 s wait) when at least
        one is and every other one has failed at least once."""
        if self.up:
            return
        links = list(self.directories.values())
        if all(l.handshaked for l in links):
            self._set_up()
        elif any(l.handshaked for l in links) and all(l.handshaked or l.failed_once
                                                      for l in links):
            self._set_up()

    def _set_up(self):
        self.up = True
        if self._welcome_call is not None and self._welcome_call.active():
            self._welcome_call.cancel()
        self._welcome_call = None
        n_up = sum(1 for l in self.directories.values() if l.handshaked)
        log.info("onion channel up: %d of %d directory node(s) handshaked", n_up,
                 len(self.directories))
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
            link.set_state(STOPPED)
        for peer in self.peers.values():
            if peer.conn is not None:
                peer.conn.close()
        for conn in list(self.inbound):
            conn.close()
        if self.listener is not None:
            self.listener.stopListening()
            self.listener = None
        if self.onion_service is not None:
            service, self.onion_service = self.onion_service, None
            service.remove()

    def status(self):
        """What this channel can tell a user (the EJMChannelStatus extension)."""
        return {
            "type": "onion", "hostid": self.hostid, "network": self.network, "up": self.up,
            "test_mode": self.test_mode,
            "tor": {"socks5": None if self.test_mode else "%s:%d" % (self.socks5_host,
                                                                    self.socks5_port),
                    "state": self.tor_state, "message": self.tor_message},
            "serving": {"state": self.serving_state,
                        "location": self.location if self.serving_state == "up" else None,
                        "message": self.serving_message},
            "failure": self.failure,
            "directories": [l.status() for l in self.directories.values()],
            "peers": {"known": len(self.peers),
                      "direct": sum(1 for p in self.peers.values() if p.handshaked)},
        }

    # ------------------------------------------------------------------ connections
    def on_connection_made(self, conn):
        link = conn.link
        if isinstance(link, DirectoryLink):
            link.conn = conn
            link.handshaked = False
            link.set_state(HANDSHAKING)
            self._send(conn, C.ONION_TYPE_HANDSHAKE, self._our_handshake())
        elif isinstance(link, Peer):
            link.conn = conn
            link.connecting = False
            self._send(conn, C.ONION_TYPE_HANDSHAKE, self._our_handshake())
        else:  # inbound
            if len(self.inbound) + len(self.peers) >= self.max_peers:
                conn.close()
                return
            self.inbound.add(conn)
            self._send(conn, C.ONION_TYPE_HANDSHAKE, self._our_handshake())

    def on_connection_lost(self, conn):
        link = conn.link
        if isinstance(link, DirectoryLink):
            if link.conn is conn:
                link.conn = None
                was = link.handshaked
                link.handshaked = False
                link.seen = set()
                if was:
                    link.set_state(CONNECTING, "connection lost")
                    log.info("lost directory %s%s", link.location,
                             "; reconnecting" if self.running else "")
                    if self.up and not any(l.handshaked for l in self.directories.values()):
                        self.up = False
                        self._emit("on_disconnect")
                elif self.running and link.state == HANDSHAKING:
                    reason = "closed the connection before answering our handshake"
                    changed = link.set_state(REFUSED, reason)
                    (log.warning if changed else log.debug)(
                        "directory %s %s (attempt %d): it may not accept our network (%s), "
                        "protocol version or location; retrying with backoff", link.location,
                        reason, link.attempts, self.network)
                    self._check_up()
        elif isinstance(link, Peer):
            if link.conn is conn:
                link.conn = None
                link.handshaked = False
                link.proven = False
                link.connecting = False
                log.debug("direct link with %s closed", link.nick)
                self._maybe_gone(link.nick)
        else:
            self.inbound.discard(conn)

    def _our_handshake(self):
        return wire.client_handshake(self.nick, self.location, self.network)

    def _send(self, conn, msgtype, line):
        if log.isEnabledFor(logging.DEBUG):
            log.debug("-> %s %s", self._who(conn), self._summary(msgtype, line))
        return conn.send(msgtype, line)

    @staticmethod
    def _who(conn):
        link = conn.link
        if isinstance(link, DirectoryLink):
            return "directory %s" % link.location[:24]
        if isinstance(link, Peer):
            return "peer %s" % link.nick
        return "inbound %s" % conn.describe()

    @staticmethod
    def _summary(msgtype, line):
        """Type, route and command of a line — never its body (DEBUG tracing)."""
        if msgtype in (C.ONION_TYPE_PRIVMSG, C.ONION_TYPE_PUBMSG):
            parts = line.split(C.COMMAND_PREFIX, 3)
            cmd = parts[2].split(" ", 1)[0][:16] if len(parts) > 2 else "?"
            return "%d %s->%s !%s (%d bytes)" % (msgtype, parts[0][:16], parts[1][:16]
                                                 if len(parts) > 1 else "?", cmd, len(line))
        if msgtype == C.ONION_TYPE_PEERLIST:
            return "789 peerlist (%d entries)" % (line.count(",") + 1 if line else 0)
        return "%d (%d bytes)" % (msgtype, len(line))

    # ------------------------------------------------------------------ receiving
    def on_line(self, conn, msgtype, text):
        if log.isEnabledFor(logging.DEBUG):
            log.debug("<- %s %s", self._who(conn), self._summary(msgtype, text))
        link = conn.link
        if isinstance(link, DirectoryLink):
            self._from_directory(link, conn, msgtype, text)
        else:
            self._from_peer(conn, msgtype, text)

    def _from_directory(self, link, conn, msgtype, text):
        if msgtype == C.ONION_TYPE_DN_HANDSHAKE:
            self._directory_handshake(link, conn, text)
        elif not link.handshaked:
            log.debug("type %d from %s before its handshake dropped", msgtype, link.location)
        elif msgtype == C.ONION_TYPE_PEERLIST:
            self._peerlist(link, text)
        elif msgtype in (C.ONION_TYPE_PRIVMSG, C.ONION_TYPE_PUBMSG):
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
            link.set_state(REFUSED, "malformed handshake answer (%s)" % exc)
            log.warning("bad dn-handshake from %s (%s); disconnecting", link.location, exc)
            conn.close()
            return
        if hs["network"] != self.network:
            theirs = wire.printable(hs["network"], 20)
            link.set_state(REFUSED, "it serves network %s, not %s" % (theirs, self.network))
            log.warning("directory %s is on network %s, not %s; ignored", link.location,
                        theirs, self.network)
            return
        if not hs["accepted"]:
            link.set_state(REFUSED, "it refused our handshake (accepted: false)")
            log.warning("directory %s refused our handshake; disconnecting", link.location)
            conn.close()
            return
        if (hs["app-name"] != C.APP_NAME or not hs["directory"]
                or not hs["proto-ver-min"] <= C.JM_VERSION <= hs["proto-ver-max"]):
            link.set_state(REFUSED, "incompatible handshake (app %s, protocol %s-%s)" % (
                wire.printable(hs["app-name"], 20), hs["proto-ver-min"], hs["proto-ver-max"]))
            log.warning("directory %s: incompatible handshake; disconnecting", link.location)
            conn.close()
            return
        link.handshaked = True
        link.nick = hs["nick"]
        link.set_state(UP)
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
        if msgtype == C.ONION_TYPE_HANDSHAKE:
            self._peer_handshake(conn, text)
            return
        peer = conn.link if isinstance(conn.link, Peer) else None
        if peer is None or not peer.handshaked:
            log.debug("type %d from an unhandshaked peer dropped", msgtype)
            return
        if msgtype in (C.ONION_TYPE_PRIVMSG, C.ONION_TYPE_PUBMSG):
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
            link.proven = True              # we dialled the location listed for nick
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
            # anyone can claim a nick in a handshake: nothing meant for nick goes over this link
            # until a message signed by nick has come over it (M4)
            peer.proven = False
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
        if msgtype == C.ONION_TYPE_PUBMSG:
            if to_nick != "PUBLIC":
                return
            if via_directory is not None:
                self._seen_via(via_directory, from_nick)
            self._emit("on_pubmsg", from_nick, msg, conn)
        else:
            if to_nick != self.nick:
                return
            if via_directory is not None:
                self._seen_via(via_directory, from_nick)
            self._emit("on_privmsg", from_nick, msg, conn)

    @staticmethod
    def _seen_via(link, nick):
        """Remember that nick sent through this directory (bounded: past MAX_SEEN_PER_DIRECTORY
        new nicks are not remembered; the first seen stay routable through it)."""
        if nick in link.seen or len(link.seen) < limits.MAX_SEEN_PER_DIRECTORY:
            link.seen.add(nick)

    def nick_proven(self, nick, conn):
        """The client verified a message signed by nick that arrived on ``conn``: if that is a
        direct link bound to nick, it is now proven to be nick's (M4) and we send to nick on it."""
        peer = getattr(conn, "link", None)
        if isinstance(peer, Peer) and peer.nick == nick and peer.conn is conn and not peer.proven:
            peer.proven = True
            log.debug("direct link with %s proven by a signed message", nick)

    # ------------------------------------------------------------------ sending
    def _handshaked_directories(self):
        return [l for l in self.directories.values() if l.handshaked and l.conn is not None]

    def pubmsg(self, msg):
        line = self.nick + C.COMMAND_PREFIX + "PUBLIC" + msg
        for link in self._handshaked_directories():
            self._send(link.conn, C.ONION_TYPE_PUBMSG, line)

    def privmsg(self, nick, cmd, message):
        if nick == self.nick:
            return
        line = self.nick + C.COMMAND_PREFIX + nick + C.COMMAND_PREFIX + cmd + " " + message
        peer = self.peers.get(nick)
        if peer is not None and not self.passive and peer.location and not peer.handshaked \
                and not peer.connecting and peer.conn is None:
            self._connect_peer(peer)
        if peer is not None and peer.handshaked and peer.proven and peer.conn is not None:
            self._send(peer.conn, C.ONION_TYPE_PRIVMSG, line)
            return
        dirs = self._handshaked_directories()
        preferred = [l for l in dirs if nick in l.seen]
        choice = preferred or dirs
        if not choice:
            log.warning("no directory connected; privmsg to %s not sent", nick)
            return
        self._send(random.choice(choice).conn, C.ONION_TYPE_PRIVMSG, line)

    def _connect_peer(self, peer):
        try:
            host, port = parse_location(peer.location)
        except OnionConfigError:
            return
        if not self.test_mode and not host.endswith(".onion"):
            log.info("peer %s advertises %s, which is not an onion: never dialled", peer.nick,
                     peer.location[:80])
            peer.location = None
            return
        peer.connecting = True
        log.debug("opening a direct link to %s at %s", peer.nick, peer.location)
        d = self._client_endpoint(host, port).connect(OnionLineFactory(self, peer))

        def failed(failure):
            peer.connecting = False
            log.debug("direct connection to %s failed: %s", peer.nick, describe_failure(failure)[1])
        d.addErrback(failed)
