"""IRC message channel (docs/protocol.md §2): Twisted IRC client, optional TLS and SOCKS5 (Tor),
reconnection with backoff, Ref-compatible chunking of private messages and packing of offers.

With ``socks5`` the connection goes only through Tor's SOCKS port (own SOCKS credentials: stream
isolation; TLS inside the Tor stream if ``usessl``), never directly. Its state (connecting / up /
unreachable / tor-unavailable, with the reason) is part of :meth:`IRCMessageChannel.status`."""
import logging
import time

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.words.protocols import irc

from jmcore.channels import ChannelConfigError, IRCChannelConfig, irc_channel_name

from .. import limits, wire
from ..tcp import send_at_once
from .base import MessageChannel

log = logging.getLogger(__name__)


class IRCConfigError(ValueError):
    pass


class JMIRCClient(irc.IRCClient):
    """One IRC connection. Lines are throttled by ``lineRate`` (Ref: 1.3 s)."""

    heartbeatInterval = 120
    MAX_LENGTH = 4096

    def __init__(self, wrapper):
        self.wrapper = wrapper
        self.nickname = wrapper.nick
        self.username = wrapper.nick
        self.realname = "None"
        self.password = wrapper.password
        self.lineRate = wrapper.line_rate
        self.assembler = wire.ChunkAssembler(max_message=limits.MAX_MESSAGE_LEN)

    # -- robustness: never let a bad line kill the connection
    def lineReceived(self, line):
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        try:
            irc.parsemsg(irc.lowDequote(line))
        except irc.IRCBadMessage:
            pass                  # twisted reports these itself (badMessage)
        except (ValueError, IndexError):
            log.info("malformed IRC line on %s dropped", self.wrapper.hostid)
            return
        try:
            irc.IRCClient.lineReceived(self, line)
        except Exception:
            log.exception("error handling IRC line on %s (dropped)", self.wrapper.hostid)

    def lineLengthExceeded(self, line):
        log.info("over-long IRC line dropped on %s", self.wrapper.hostid)

    # -- registration / channel
    def connectionMade(self):
        send_at_once(self.transport)
        irc.IRCClient.connectionMade(self)
        self.wrapper.client = self

    def connectionLost(self, reason=protocol.connectionDone):
        if self.wrapper.client is self:
            self.wrapper.client = None
        self.wrapper.on_connection_lost()
        irc.IRCClient.connectionLost(self, reason)

    def signedOn(self):
        self.join(self.wrapper.channel)

    def joined(self, channel):
        if channel.lower() != self.wrapper.channel.lower():
            return
        self.sendLine("MODE %s +B" % self.nickname)
        self.wrapper.joined_ok()

    def isupport(self, options):
        for opt in options:
            if opt.startswith("NETWORK="):
                name = opt.split("=", 1)[1]
                if name:
                    self.wrapper.hostid = name

    def irc_ERR_NICKNAMEINUSE(self, prefix, params):
        log.warning("IRC nick %s in use on %s; retrying in 10 s", self._attemptedNick,
                    self.wrapper.hostid)
        reactor.callLater(10.0, self._retry_nick)

    def _retry_nick(self):
        if self.wrapper.client is self:
            self.setNick(self._attemptedNick)

    def irc_unknown(self, prefix, command, params):
        pass

    def alterCollidedNick(self, nickname):
        return nickname

    # -- messages
    def privmsg(self, user, channel, message):
        nick = wire.irc_sender_nick(user)
        if not nick:
            return
        if channel == self.nickname:
            complete = self.assembler.feed(nick, message)
            if complete is not None:
                self.wrapper._emit("on_privmsg", nick, complete, self)
        elif channel.lower() == self.wrapper.channel.lower():
            self.wrapper._emit("on_pubmsg", nick, message, self)

    def noticed(self, user, channel, message):
        pass

    def userLeft(self, user, channel):
        self._left(user)

    def userQuit(self, user, quitMessage):
        self._left(user)

    def userKicked(self, kickee, channel, kicker, message):
        self._left(kickee)

    def _left(self, user):
        nick = wire.irc_sender_nick(user)
        self.assembler.forget(nick)
        self.wrapper._emit("on_nick_leave", nick)

    # -- sending
    def send_privmsg(self, nick, cmd, message):
        for line in wire.irc_privmsg_lines(nick, cmd, message):
            self.sendLine(line)

    def send_pubmsg(self, message):
        self.sendLine("PRIVMSG %s :%s" % (self.wrapper.channel, message))

    def send_announce(self, offerlines):
        for line in wire.irc_announce_lines(self.wrapper.channel, offerlines):
            self.sendLine(line)


class _Factory(protocol.Factory):
    def __init__(self, wrapper):
        self.wrapper = wrapper

    def buildProtocol(self, addr):
        p = JMIRCClient(self.wrapper)
        p.factory = self
        return p


class IRCMessageChannel(MessageChannel):
    """A ``chan_configs`` entry of type irc, read through the typed model the plugin builds it
    with (:class:`jmcore.channels.IRCChannelConfig`; Ref keys host, port, channel, usessl,
    socks5, socks5_host, socks5_port, btcnet; extensions password and line_rate, seconds per
    line, default 1.3)."""

    kind = "irc"

    def __init__(self, config, network="mainnet"):
        super().__init__()
        try:
            cfg = IRCChannelConfig.from_dict(config, network)
        except ChannelConfigError as exc:
            raise IRCConfigError(str(exc)) from None
        self.host, self.port = cfg.host, cfg.port
        self.hostid = self.host + str(self.port)
        self.channel = irc_channel_name(cfg.channel, cfg.btcnet)
        self.usessl, self.socks5 = cfg.usessl, cfg.socks5
        self.socks5_host, self.socks5_port = cfg.socks5_host, cfg.socks5_port
        self.password = cfg.extensions.get("password") or None
        rate = cfg.extensions.get("line_rate", 1.3)
        self.line_rate = float(rate) if rate not in (None, "", 0, "0") else None
        self.client = None
        self.service = None
        self.joined = False
        self.state, self.reason, self.since, self.attempts = "connecting", "", time.monotonic(), 0

    def _set_state(self, state, reason=""):
        changed = (state, reason) != (self.state, self.reason)
        if state != self.state:
            self.since = time.monotonic()
        self.state, self.reason = state, reason
        return changed

    def status(self):
        """What this channel can tell a user (the EJMChannelStatus extension)."""
        return {"type": "irc", "hostid": self.hostid, "server": "%s:%d" % (self.host, self.port),
                "channel": self.channel, "tls": self.usessl,
                "tor": ("%s:%d" % (self.socks5_host, self.socks5_port)) if self.socks5 else None,
                "up": self.joined, "state": self.state, "reason": self.reason,
                "attempts": self.attempts, "for_s": round(time.monotonic() - self.since, 1)}

    def _attempt(self):
        self.attempts += 1
        if self.state not in ("unreachable", "tor-unavailable"):
            self._set_state("connecting")

    def _attempt_failed(self, failure):
        from .onion import describe_failure
        state, reason = describe_failure(failure)
        if self._set_state(state, reason):
            log.warning("IRC %s:%d %s: %s", self.host, self.port, state, reason)
        return failure

    def _endpoint(self):
        # TLS (the standard library's ssl, see jmdaemon.tls) only when a server uses it
        if self.socks5:
            from ..tor.socks import TorSocksEndpoint
            ep = TorSocksEndpoint(reactor, self.socks5_host, self.socks5_port, self.host,
                                  self.port, isolate=True, label="ejm-irc")
            if self.usessl:
                from ..tls import client_endpoint as tls_over
                return tls_over(ep, peer_label="%s:%d" % (self.host, self.port))
            return ep
        tcp = TCP4ClientEndpoint(reactor, self.host, self.port, timeout=30)
        if self.usessl:
            from ..tls import client_endpoint
            return client_endpoint(tcp, peer_label="%s:%d" % (self.host, self.port))
        return tcp

    def run(self):
        if self.service is not None:
            return
        log.info("connecting to IRC %s:%d %s%s%s", self.host, self.port, self.channel,
                 " (TLS)" if self.usessl else "", " via SOCKS5" if self.socks5 else "")
        channel = self

        class Tracked:
            def __init__(self, inner):
                self.inner = inner

            def connect(self, factory):
                channel._attempt()
                return self.inner.connect(factory).addErrback(channel._attempt_failed)
        self.service = ClientService(Tracked(self._endpoint()), _Factory(self),
                                     retryPolicy=backoffPolicy(initialDelay=1.0, maxDelay=120.0))
        self.service.startService()

    def shutdown(self):
        if self.service is None:
            return
        client = self.client
        service, self.service = self.service, None
        if client is not None:
            try:
                client.quit("shutdown")
            except Exception:
                pass
        service.stopService()

    def joined_ok(self):
        self.joined = True
        self._set_state("up")
        self._emit("on_welcome")

    def on_connection_lost(self):
        if self.service is None:
            self._set_state("stopped")
        elif not self.joined:
            self._set_state("unreachable", "connection closed before joining the channel")
        if self.joined:
            self.joined = False
            self._set_state("connecting", "connection lost")
            log.info("IRC connection to %s lost%s", self.hostid,
                     "; reconnecting" if self.service else "")
            self._emit("on_disconnect")

    def set_nick(self, nick):
        changed = self.nick is not None and nick != self.nick
        super().set_nick(nick)
        if changed and self.client is not None:
            self.client.setNick(nick)

    def pubmsg(self, msg):
        if self.client is not None:
            self.client.send_pubmsg(msg)

    def privmsg(self, nick, cmd, message):
        if self.client is not None:
            self.client.send_privmsg(nick, cmd, message)

    def announce_orders(self, orderlines):
        if self.client is not None:
            self.client.send_announce(orderlines)
