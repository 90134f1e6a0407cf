"""TLS on the standard library's ``ssl``: IRC servers with ``usessl`` (also inside a Tor SOCKS
connection) and AMP with ``--ssl-cert``. No pyOpenSSL, no cryptography: :class:`TLSProtocol` is a
Twisted protocol wrapper around :class:`ssl.SSLObject` and two :class:`ssl.MemoryBIO` (what asyncio's
sslproto does): ciphertext from the TCP transport goes into the incoming BIO, plaintext for the
application comes out of the SSLObject, and what it writes goes out through the outgoing BIO.

Invariants:

* The application protocol is connected at once (it may write before the handshake is done);
  what it writes before the handshake is held, at most :data:`MAX_PENDING` bytes (more closes the
  connection), and sent in order once the handshake is done. After the handshake every write is
  encrypted at once and handed to the TCP transport, so backpressure is the TCP transport's own:
  ``registerProducer`` goes straight to it.
* Every TLS error (handshake, bad record, garbage, no handshake within the timeout, the peer
  closing mid-handshake or without close_notify) ends the connection: one log line, and the
  application's ``connectionLost`` gets a :class:`TLSError` (or ``ConnectionLost``) — never an
  exception out of the reactor. ``connectionLost`` reaches the application exactly once.
* ``loseConnection`` sends close_notify (after anything written before it) and closes the TCP
  connection without waiting for the peer's; a close_notify from the peer is answered the same way.
* Client side: no certificate verification and no SNI, as before (the reference IRC client does
  not verify IRC certificates either; the JoinMarket messages it carries are signed and, where
  private, encrypted end to end). The standard library's defaults otherwise (TLS 1.2 or newer).

pyOpenSSL is never imported by the daemon. Where it is installed (a development venv) Twisted's
TCP module, reactor, AMP and endpoints import it whenever they are first imported; :func:`import_twisted`
imports them once, at start, with ``OpenSSL`` hidden (``sys.modules["OpenSSL"] = None`` makes
``import OpenSSL`` raise ImportError, which is how they learn that pyOpenSSL is not installed), so
that it costs nothing (about 13 MiB of RSS and 0.3 s). Twisted's own TLS shortcuts
(``connectSSL``, ``listenSSL``, ``SSL4ClientEndpoint``, ``wrapClientTLS``, ``startTLS``) need
pyOpenSSL and are not used: TLS goes only through :func:`client_endpoint` and :func:`server_factory`.
"""
from __future__ import annotations

import importlib
import logging
import ssl
import sys
from typing import Any

from twisted.internet import error
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

log = logging.getLogger(__name__)

__all__ = ["TLSError", "TLSConfigError", "TLSProtocol", "TLSFactory", "import_twisted",
           "client_context", "client_endpoint", "server_context", "server_factory"]

# the modules whose first import looks for pyOpenSSL and that the daemon uses
PROBING_MODULES = ("twisted.internet.reactor", "twisted.protocols.amp", "twisted.internet.endpoints")

MAX_PENDING = 256 * 1024        # plaintext held before the handshake is done (IRC: NICK/USER)
READ_SIZE = 64 * 1024           # plaintext handed to the application per dataReceived
HANDSHAKE_TIMEOUT = 60.0        # seconds from TCP connect to a finished handshake


class TLSError(Exception):
    """Why a TLS connection ended (handed to the application's ``connectionLost``)."""


class TLSConfigError(ValueError):
    """A certificate or key that cannot be used; ``str()`` says what to do."""


def import_twisted() -> bool:
    """Import Twisted's reactor, AMP and endpoints without loading pyOpenSSL.

    Returns True if OpenSSL was hidden for these imports (this process had not loaded either)."""
    hide = "OpenSSL" not in sys.modules and not all(m in sys.modules for m in PROBING_MODULES)
    if hide:
        sys.modules["OpenSSL"] = None  # type: ignore[assignment]
    try:
        for name in PROBING_MODULES:
            importlib.import_module(name)
    finally:
        if hide and sys.modules.get("OpenSSL", False) is None:
            del sys.modules["OpenSSL"]
    return hide


class TLSProtocol(ProtocolWrapper):
    """TLS between a TCP transport (``self.transport``) and ``wrappedProtocol``, for which this
    object is the transport."""

    factory: TLSFactory
    transport: Any

    def __init__(self, factory: TLSFactory, wrappedProtocol: Any):
        super().__init__(factory, wrappedProtocol)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls: ssl.SSLObject | None = None
        self._handshake_done = False
        self._pending: list[bytes] = []          # plaintext written before the handshake
        self._pending_size = 0
        self._close_after_handshake = False      # the application asked to close meanwhile
        self._shut_down = False                  # our close_notify is out; nothing more to send
        self._peer_closed = False                # the peer's close_notify arrived
        self._reason: Failure | None = None      # why we are ending the connection
        self._lost = False
        self._timeout: Any = None

    def _peer(self) -> str:
        if self.factory.peer_label:
            return self.factory.peer_label
        try:
            peer = self.transport.getPeer()
            return "%s:%s" % (peer.host, peer.port)
        except Exception:
            return "?"

    # -- from the TCP transport
    def connectionMade(self) -> None:
        f = self.factory
        self._tls = f.context.wrap_bio(self._incoming, self._outgoing, server_side=f.server_side,
                                       server_hostname=f.server_hostname)
        if f.handshake_timeout:
            self._timeout = f.clock().callLater(f.handshake_timeout, self._handshake_timed_out)
        self._handshake()

    def dataReceived(self, data: bytes) -> None:
        if self._lost or self._reason is not None or self._shut_down:
            return
        self._incoming.write(data)
        if not self._handshake_done:
            self._handshake()
            if not self._handshake_done:
                return
        self._read()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._lost:
            return
        self._lost = True
        self._cancel_timeout()
        if self._reason is not None:
            reason = self._reason
        elif not self._handshake_done:
            if reason.check(error.ConnectionDone):
                reason = Failure(TLSError("the connection closed during the TLS handshake"))
            log.info("TLS with %s: %s", self._peer(), reason.getErrorMessage())
        elif not (self._peer_closed or self._shut_down) and reason.check(error.ConnectionDone):
            log.debug("TLS with %s: closed without close_notify", self._peer())
            reason = Failure(error.ConnectionLost("TLS connection closed without close_notify"))
        if self.wrappedProtocol is not None:
            ProtocolWrapper.connectionLost(self, reason)

    # -- TLS engine
    def _handshake(self) -> None:
        tls = self._tls
        if tls is None:
            return
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, ValueError, OSError) as exc:
            self._fail("handshake", exc)
            return
        self._handshake_done = True
        self._cancel_timeout()
        log.debug("TLS with %s: %s, %s", self._peer(), tls.version(), (tls.cipher() or ("?",))[0])
        self._flush()
        pending, self._pending, self._pending_size = self._pending, [], 0
        for data in pending:
            self._encrypt(data)
        if self._close_after_handshake and self._reason is None:
            self._shutdown()

    def _read(self) -> None:
        tls = self._tls
        while tls is not None and not self._lost and self._reason is None \
                and not self._shut_down and not self.disconnecting:
            try:
                data = tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self._peer_closed = True
                log.debug("TLS with %s: close_notify from the peer", self._peer())
                self._shutdown()
                break
            except (ssl.SSLError, ValueError, OSError) as exc:
                self._fail("read", exc)
                break
            if not data:
                self._peer_closed = True
                self._shutdown()
                break
            self.wrappedProtocol.dataReceived(data)
        self._flush()            # TLS 1.3 session tickets, key updates, alerts

    def _encrypt(self, data: bytes) -> None:
        tls = self._tls
        if tls is None or self._reason is not None or self._shut_down:
            return
        view = memoryview(data)
        try:
            while view:
                n = tls.write(view)
                view = view[n:]
        except (ssl.SSLError, ValueError, OSError) as exc:
            self._fail("write", exc)
            return
        self._flush()

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data and not self._lost:
            self.transport.write(data)

    def _shutdown(self) -> None:
        """close_notify after what was written, then close TCP (not waiting for the peer's)."""
        if self._shut_down or self._lost:
            return
        self._shut_down = True
        self._cancel_timeout()
        if self._tls is not None and self._handshake_done:
            try:
                self._tls.unwrap()
            except ssl.SSLWantReadError:
                pass                     # the peer's close_notify: not waited for
            except (ssl.SSLError, ValueError, OSError) as exc:
                log.debug("TLS with %s: close_notify: %s", self._peer(), exc)
            self._flush()
        self.transport.loseConnection()

    def _fail(self, what: str, exc: BaseException) -> None:
        if self._reason is None:
            text = str(exc) or exc.__class__.__name__
            self._reason = Failure(TLSError("TLS %s with %s failed: %s" % (what, self._peer(), text)))
            log.info("TLS %s with %s failed: %s", what, self._peer(), text)
        self._cancel_timeout()
        self._flush()                    # the alert, if OpenSSL made one
        if not self._lost:
            self.transport.loseConnection()

    def _handshake_timed_out(self) -> None:
        self._timeout = None
        if not self._handshake_done and not self._lost:
            self._fail("handshake", TimeoutError("no TLS handshake within %g s"
                                                 % self.factory.handshake_timeout))

    def _cancel_timeout(self) -> None:
        if self._timeout is not None:
            if self._timeout.active():
                self._timeout.cancel()
            self._timeout = None

    # -- the application's transport
    def write(self, data: bytes) -> None:
        if not data or self._lost or self._reason is not None or self.disconnecting:
            return
        if self._handshake_done:
            self._encrypt(bytes(data))
            return
        if self._pending_size + len(data) > MAX_PENDING:
            self._fail("handshake", TLSError("over %d bytes written before the handshake"
                                             % MAX_PENDING))
            return
        self._pending.append(bytes(data))
        self._pending_size += len(data)

    def writeSequence(self, seq: Any) -> None:
        self.write(b"".join(seq))

    def loseConnection(self) -> None:
        if self.disconnecting or self._lost:
            return
        self.disconnecting = True
        if self._handshake_done or self._reason is not None:
            self._shutdown()
        else:
            self._close_after_handshake = True    # held writes go out first

    def abortConnection(self) -> None:
        self.disconnecting = True
        if not self._lost:
            self.transport.abortConnection()


class TLSFactory(WrappingFactory["TLSProtocol"]):
    """``wrappedFactory``'s protocols behind TLS (:class:`TLSProtocol`); listen or connect with
    it over plain TCP."""

    protocol = TLSProtocol

    def __init__(self, wrappedFactory: Any, context: ssl.SSLContext, server_side: bool,
                 server_hostname: str | None = None,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, reactor: Any = None,
                 peer_label: str | None = None):
        super().__init__(wrappedFactory)
        self.context = context
        self.server_side = server_side
        self.server_hostname = server_hostname
        self.handshake_timeout = handshake_timeout
        self._reactor = reactor
        self.peer_label = peer_label          # in log lines (the proxy's address under SOCKS)

    def clock(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor
            self._reactor = reactor
        return self._reactor

    def logPrefix(self) -> str:
        return "TLS"


@implementer(IStreamClientEndpoint)
class _TLSClientEndpoint:
    """TLS over another stream client endpoint; connect() fires with the application protocol
    (once TCP, or the SOCKS tunnel, is up; the handshake follows)."""

    def __init__(self, context: ssl.SSLContext, wrapped: Any, **kw: Any):
        self._context = context
        self._wrapped = wrapped
        self._kw = kw

    def connect(self, factory: Any) -> Any:
        d = self._wrapped.connect(TLSFactory(factory, self._context, False, **self._kw))
        return d.addCallback(lambda tls_protocol: tls_protocol.wrappedProtocol)


def client_context() -> ssl.SSLContext:
    """A client context that accepts any server certificate (see the module docstring)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_endpoint(wrapped: Any, context: ssl.SSLContext | None = None, **kw: Any) -> Any:
    """``wrapped`` (any stream client endpoint: TCP, a SOCKS endpoint) with TLS on top;
    ``context`` default: unverified (:func:`client_context`)."""
    return _TLSClientEndpoint(context if context is not None else client_context(), wrapped, **kw)


def _no_password() -> bytes:
    raise TLSConfigError("the key is encrypted")


def server_context(key_path: str, cert_path: str) -> ssl.SSLContext:
    """A server context with this key and certificate (PEM files); :class:`TLSConfigError`
    saying what is wrong if they cannot be loaded or do not match."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert_path, key_path, password=_no_password)
    except TLSConfigError:
        raise TLSConfigError("the private key %s is encrypted; give it without a passphrase "
                             "(e.g. `openssl pkey -in KEY -out KEY.plain`)" % key_path) from None
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
                raise TLSConfigError("the private key %s does not belong to the certificate %s"
                                     % (key_path, cert_path)) from None
            raise TLSConfigError("%s and %s must be a PEM certificate and its PEM private key (%s)"
                                 % (cert_path, key_path, exc)) from None
        raise TLSConfigError("cannot read %s: %s" % (exc.filename or cert_path,
                                                     exc.strerror or exc)) from None
    return ctx


def server_factory(factory: Any, key_path: str, cert_path: str, **kw: Any) -> TLSFactory:
    """``factory`` behind TLS with this key and certificate (PEM files), to listen on with
    ``listenTCP``. Raises :class:`TLSConfigError` if the files cannot be loaded or do not match."""
    return TLSFactory(factory, server_context(key_path, cert_path), True, **kw)

