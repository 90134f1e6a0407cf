"""A SOCKS5 client endpoint for Tor with stream isolation (Twisted).

Every :class:`TorSocksEndpoint` connection authenticates with its own random username/password
(RFC 1929): tor (``IsolateSOCKSAuth``, its default) then never shares a circuit between two of
our connections, so a directory or a peer cannot link our connections to each other by circuit.
The destination host name goes to Tor unresolved (no DNS query leaves the machine), and a
connection only ever goes to the proxy: there is no direct fallback.

Failures are typed so the channel can tell the user what happened:

* :class:`TorUnavailableError` — the SOCKS port refused the TCP connection, or is not SOCKS5,
  or refused our method/credentials (Tor is not running, or that port is something else);
* :class:`SocksReplyError` — Tor answered the CONNECT with an error (``code`` and a human
  ``reason``, e.g. 0xF0 "onion service descriptor not found");
* :class:`SocksTimeoutError` — no complete answer within the timeout.
"""
import logging

from twisted.internet import defer, error, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from zope.interface import implementer

from jmcore import socks5

from ..tcp import send_at_once

log = logging.getLogger(__name__)

__all__ = ["TorSocksEndpoint", "SocksFailure", "TorUnavailableError", "SocksReplyError",
           "SocksTimeoutError"]


class SocksFailure(Exception):
    """Base of the SOCKS failures below; ``reason`` is a short text for the user."""

    def __init__(self, reason, code=None):
        super().__init__(reason)
        self.reason = reason
        self.code = code


class TorUnavailableError(SocksFailure):
    pass


class SocksReplyError(SocksFailure):
    pass


class SocksTimeoutError(SocksFailure):
    pass


class _SocksProtocol(protocol.Protocol):
    """Speaks SOCKS5 to the proxy, then hands the connection to the wrapped protocol."""

    def __init__(self, endpoint, factory, done):
        self.endpoint = endpoint
        self.factory = factory
        self.done = done
        self.state = "method"
        self.buf = b""
        self.wrapped = None
        self.timer = None

    def connectionMade(self):
        send_at_once(self.transport)
        ep = self.endpoint
        self.timer = ep.reactor.callLater(ep.timeout, self._timeout)
        self.transport.write(socks5.greeting(ep.credentials is not None))

    def _timeout(self):
        self.timer = None
        self._fail(SocksTimeoutError("no answer through Tor within %ds" % self.endpoint.timeout))

    def _fail(self, exc):
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.state = "failed"
        if not self.done.called:
            self.done.errback(exc)
        if self.transport is not None:
            self.transport.loseConnection()

    def dataReceived(self, data):
        if self.state == "open":
            self.wrapped.dataReceived(data)
            return
        if self.state == "failed":
            return
        self.buf += data
        try:
            self._advance()
        except socks5.SocksProtocolError as exc:
            self._fail(TorUnavailableError(str(exc)))

    def _advance(self):
        ep = self.endpoint
        if self.state == "method":
            method = socks5.parse_method_choice(self.buf)
            if method is None:
                return
            self.buf = self.buf[2:]
            if method == socks5.METHOD_USERPASS and ep.credentials is not None:
                self.state = "auth"
                self.transport.write(socks5.userpass_request(*ep.credentials))
            elif method == socks5.METHOD_NO_AUTH and ep.credentials is None:
                self._send_connect()
            else:
                self._fail(TorUnavailableError(
                    "the SOCKS proxy does not accept %s" % (
                        "username/password (stream isolation)" if ep.credentials else
                        "connections without authentication")))
                return
        if self.state == "auth":
            ok = socks5.parse_userpass_reply(self.buf)
            if ok is None:
                return
            self.buf = self.buf[2:]
            if not ok:
                self._fail(TorUnavailableError("the SOCKS proxy refused our isolation credentials"))
                return
            self._send_connect()
        if self.state == "connect":
            parsed = socks5.parse_reply(self.buf)
            if parsed is None:
                return
            code, length = parsed
            rest, self.buf = self.buf[length:], b""
            if code != 0:
                self._fail(SocksReplyError(socks5.reply_text(code), code))
                return
            self._open(rest)

    def _send_connect(self):
        self.state = "connect"
        self.transport.write(socks5.connect_request(self.endpoint.host, self.endpoint.port))

    def _open(self, rest):
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.state = "open"
        self.wrapped = self.factory.buildProtocol(self.transport.getPeer())
        if self.wrapped is None:
            self.done.errback(SocksFailure("the protocol factory refused the connection"))
            self.transport.loseConnection()
            return
        self.wrapped.makeConnection(self.transport)
        self.done.callback(self.wrapped)
        if rest:
            self.wrapped.dataReceived(rest)

    def connectionLost(self, reason=protocol.connectionDone):
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.state == "open" and self.wrapped is not None:
            self.wrapped.connectionLost(reason)
        elif not self.done.called:
            self.done.errback(TorUnavailableError("the SOCKS proxy closed the connection"))


class _SocksFactory(protocol.Factory):
    def __init__(self, endpoint, factory, done):
        self.endpoint, self.factory, self.done = endpoint, factory, done

    def buildProtocol(self, addr):
        return _SocksProtocol(self.endpoint, self.factory, self.done)


@implementer(IStreamClientEndpoint)
class TorSocksEndpoint:
    """Connect to ``host:port`` through the SOCKS5 proxy at ``proxy_host:proxy_port``.

    ``isolate`` (default): fresh random credentials for every :meth:`connect` (stream
    isolation). ``timeout``: for the whole SOCKS exchange (the reference waits 60 s for an
    onion)."""

    def __init__(self, reactor, proxy_host, proxy_port, host, port, isolate=True, timeout=60.0,
                 label="ejm"):
        self.reactor = reactor
        self.proxy_host, self.proxy_port = proxy_host, int(proxy_port)
        self.host, self.port = host, int(port)
        self.isolate = isolate
        self.timeout = float(timeout)
        self.label = label
        self.credentials = None
        self.last_username = None

    def connect(self, protocolFactory):
        self.credentials = socks5.isolation_credentials(self.label) if self.isolate else None
        self.last_username = self.credentials[0].decode() if self.credentials else None
        done = defer.Deferred()
        proxy = TCP4ClientEndpoint(self.reactor, self.proxy_host, self.proxy_port, timeout=10)
        d = proxy.connect(_SocksFactory(self, protocolFactory, done))

        def proxy_failed(failure):
            if failure.check(error.ConnectionRefusedError, error.ConnectError, error.DNSLookupError,
                             error.TimeoutError):
                reason = "nothing answers at the Tor SOCKS port %s:%d" % (self.proxy_host,
                                                                           self.proxy_port)
                if not done.called:
                    done.errback(TorUnavailableError(reason))
                return None
            if not done.called:
                done.errback(failure)
            return None
        d.addErrback(proxy_failed)
        return done
