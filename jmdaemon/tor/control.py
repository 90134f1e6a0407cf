"""Onion services through Tor's control port: a maker's ephemeral v3 service and a directory
node's persistent one. Our own small control-port client (control-spec.txt), no txtorcon.

* Authentication as tor offers it (PROTOCOLINFO): the cookie (SAFECOOKIE, else COOKIE) when tor
  names a cookie file, else a password (HASHEDPASSWORD) when one is configured, else NULL; a
  cookie file that cannot be read falls back to the password if there is one. SAFECOOKIE checks
  tor's proof of the cookie (the server hash) before sending ours: a control port that cannot
  prove it knows the cookie never gets our proof. Failures become :class:`TorControlError` with a
  message saying what to set.
* The service maps virtual port 5222 to a listener on 127.0.0.1 that the caller opened.
* It is tied to our control connection (no ``Detach``): :meth:`OnionService.remove` deletes it
  (``DEL_ONION``) and closes the connection, and if the daemon dies tor drops it anyway.
* A maker's key is never written anywhere (``DiscardPK``). A directory's key persists in
  ``<hidden_service_dir>/hs_ed25519_secret_key`` in tor's own file format (so the same directory
  can be served by a tor ``HiddenServiceDir`` too), mode 0600, and is handed to tor through
  ``ADD_ONION`` (tor never needs to read our files).
* :func:`publish_onion` returns once tor reports the first descriptor upload (``HS_DESC
  UPLOADED``), when the service can be reached.
* Replies are parsed strictly and bounded (:data:`MAX_LINE`, :data:`MAX_REPLY_LINES`,
  :data:`MAX_REPLY_BYTES`): anything else closes the connection with an error, never a crash.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet import defer, error
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import connectionDone
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from jmcore.constants import ONION_SERVING_PORT
from jmcore.torcheck import control_auth_message, control_port_message

log = logging.getLogger(__name__)

__all__ = ["TorControlError", "OnionService", "publish_onion", "load_or_create_key",
           "KEY_FILE", "ControlReply", "TorControlProtocol", "authenticate"]

KEY_FILE = "hs_ed25519_secret_key"
_KEY_HEADER = b"== ed25519v1-secret: type0 ==\x00\x00\x00"

MAX_LINE = 8192               # bytes per reply line (tor's longest, GETINFO answers, are data lines)
MAX_REPLY_LINES = 1000        # lines per reply (data lines included)
MAX_REPLY_BYTES = 256 * 1024  # bytes per reply
REPLY_TIMEOUT = 30.0          # seconds tor has to answer a command before the service is up
COOKIE_LEN = 32               # control-spec: the authentication cookie is 32 bytes

SAFECOOKIE_SERVER_KEY = b"Tor safe cookie authentication server-to-controller hash"
SAFECOOKIE_CLIENT_KEY = b"Tor safe cookie authentication controller-to-server hash"

_LINE = re.compile(r"([0-9]{3})([ +-])(.*)\Z", re.S)
_SERVICE_ID = re.compile(r"[a-z2-7]{56}\Z")
_HEX64 = re.compile(r"[0-9A-Fa-f]{64}\Z")


class TorControlError(Exception):
    """The onion service could not be published; ``str()`` is the message for the user."""


class _ProtocolError(Exception):
    """The control port broke the protocol (or a bound); the connection is closed."""


class _ConnectionProblem(TorControlError):
    """The control connection closed or did not answer in time."""


class _ProtocolBroken(_ConnectionProblem):
    """What answered broke the control protocol or one of its bounds."""


def not_control_protocol_message(address: str, detail: str) -> str:
    return ("what answers at %s is not Tor's control port (%s). Set tor_control to the "
            "ControlPort of your torrc (not its SocksPort), e.g. plugins.joinmarket.channels "
            "{\"tor_control\": \"127.0.0.1:9051\"}." % (address, detail))


@dataclass
class ControlReply:
    """One reply: its status code and its lines (``text`` of each, data of ``+`` lines joined)."""
    code: int
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.code == 250

    def text(self) -> str:
        return "%d %s" % (self.code, " / ".join(line for line in self.lines if line != "OK")[:300])


class TorControlProtocol(LineOnlyReceiver):
    """Commands in, replies out in order (tor answers commands in the order it got them);
    asynchronous events (6xx) go to ``on_event``. Every bound broken or line not in the
    protocol's grammar fails what is pending and closes the connection."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE

    def __init__(self) -> None:
        self._waiting: list[defer.Deferred] = []
        self._code: int | None = None
        self._lines: list[str] = []
        self._size = 0
        self._data: list[str] | None = None       # inside a "+" line's data block
        self.on_event: Callable[[ControlReply], None] | None = None
        self.on_lost: Callable[[Failure], None] | None = None
        self.closed: Failure | None = None

    # -- commands
    def command(self, line: str) -> defer.Deferred:
        """Deferred firing with the :class:`ControlReply`; fails with TorControlError if the
        connection closes or breaks the protocol first."""
        if "\r" in line or "\n" in line:
            return defer.fail(ValueError("a control command is one line"))
        if self.closed is not None or self.transport is None:
            return defer.fail(_ConnectionProblem("the control connection is closed"))
        d: defer.Deferred = defer.Deferred()
        self._waiting.append(d)
        self.transport.write(line.encode("utf-8") + b"\r\n")
        return d

    def close(self) -> None:
        if self.transport is not None and self.closed is None:
            self.transport.loseConnection()

    # -- replies
    def lineReceived(self, raw: bytes) -> None:
        if self.closed is not None:
            return
        try:
            self._line(raw)
        except _ProtocolError as exc:
            self._broken(str(exc))

    def _line(self, raw: bytes) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        self._size += len(raw) + 2
        if self._size > MAX_REPLY_BYTES:
            raise _ProtocolError("a reply over %d bytes" % MAX_REPLY_BYTES)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _ProtocolError("a reply line that is not UTF-8") from None
        if self._data is not None:               # data block of a "+" line, ends with "."
            if text == ".":
                self._lines.append("\n".join(self._data))
                self._data = None
            else:
                self._data.append(text[1:] if text.startswith(".") else text)
            self._count()
            return
        m = _LINE.match(text)
        if m is None:
            raise _ProtocolError("not a control-port reply line: %r" % text[:60])
        code, sep, rest = int(m.group(1)), m.group(2), m.group(3)
        if self._code is None:
            self._code = code
        elif code != self._code:
            raise _ProtocolError("status %d inside a %d reply" % (code, self._code))
        if sep == "+":
            self._lines.append(rest)
            self._data = []
            self._count()
            return
        self._lines.append(rest)
        self._count()
        if sep == " ":
            reply = ControlReply(code, self._lines)
            self._code, self._lines, self._size = None, [], 0
            self._deliver(reply)

    def _count(self) -> None:
        if len(self._lines) + len(self._data or ()) > MAX_REPLY_LINES:
            raise _ProtocolError("a reply of over %d lines" % MAX_REPLY_LINES)

    def _deliver(self, reply: ControlReply) -> None:
        if 600 <= reply.code < 700:
            if self.on_event is not None:
                try:
                    self.on_event(reply)
                except Exception:
                    log.exception("Tor control event %s (dropped)", reply.text()[:80])
            return
        if not self._waiting:
            raise _ProtocolError("a reply to no command: %s" % reply.text()[:80])
        d = self._waiting.pop(0)
        if not d.called:                 # not timed out meanwhile
            d.callback(reply)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._broken("a reply line over %d bytes" % MAX_LINE)

    def _broken(self, why: str) -> None:
        log.warning("Tor control port broke the protocol (%s); closing the connection", why)
        self._fail_all(_ProtocolBroken(why))
        if self.transport is not None:
            self.transport.loseConnection()

    def _fail_all(self, exc: Exception) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if not d.called:
                d.errback(exc)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        first = self.closed is None
        self.closed = reason
        self._fail_all(_ConnectionProblem("the control connection closed (%s)"
                                          % reason.getErrorMessage()))
        if first and self.on_lost is not None:
            self.on_lost(reason)


# ------------------------------------------------------------------------------ authentication

def _unquote(quoted: str) -> bytes:
    """A control-spec QuotedString's contents (without the quotes), C escapes undone."""
    out = bytearray()
    i = 0
    simple = {"n": b"\n", "r": b"\r", "t": b"\t", "\\": b"\\", '"': b'"', "'": b"'"}
    while i < len(quoted):
        c = quoted[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        nxt = quoted[i + 1:i + 2]
        if nxt in simple:
            out += simple[nxt]
            i += 2
        elif re.match(r"[0-7]{3}", quoted[i + 1:i + 4]):
            out.append(int(quoted[i + 1:i + 4], 8) & 0xFF)
            i += 4
        else:
            raise _ProtocolError("a bad escape in a quoted string")
    return bytes(out)


@dataclass
class ProtocolInfo:
    methods: list[str]
    cookie_file: str | None


def parse_protocolinfo(reply: ControlReply) -> ProtocolInfo:
    methods: list[str] | None = None
    cookie_file = None
    for line in reply.lines:
        if not line.startswith("AUTH "):
            continue
        m = re.match(r"AUTH METHODS=([A-Z0-9_,]+)(?: |\Z)", line)
        if m is None:
            raise _ProtocolError("an AUTH line without METHODS: %r" % line[:80])
        methods = m.group(1).split(",")
        q = re.search(r' COOKIEFILE="((?:[^"\\]|\\.)*)"', line)
        if q is not None:
            cookie_file = os.fsdecode(_unquote(q.group(1)))
    if methods is None:
        raise _ProtocolError("no AUTH line in the PROTOCOLINFO reply")
    return ProtocolInfo(methods, cookie_file)


def safecookie_hashes(cookie: bytes, client_nonce: bytes, server_nonce: bytes) -> tuple[bytes, bytes]:
    """(server hash tor must send, client hash we send): control-spec 3.24."""
    msg = cookie + client_nonce + server_nonce
    return (hmac.new(SAFECOOKIE_SERVER_KEY, msg, hashlib.sha256).digest(),
            hmac.new(SAFECOOKIE_CLIENT_KEY, msg, hashlib.sha256).digest())


def _read_cookie(path: str) -> bytes:
    with open(path, "rb") as f:
        cookie = f.read(COOKIE_LEN + 1)
    if len(cookie) != COOKIE_LEN:
        raise OSError("the cookie file %s is not %d bytes" % (path, COOKIE_LEN))
    return cookie


async def _call(proto: TorControlProtocol, line: str, timeout: float, clock: Any) -> ControlReply:
    d = proto.command(line)
    d.addTimeout(timeout, clock)
    try:
        return await d
    except defer.TimeoutError:
        proto.close()
        verb = line.split(" ", 1)[0]
        raise _ConnectionProblem("no answer to %s within %.0f s" % (verb, timeout)) from None


async def authenticate(proto: TorControlProtocol, address: str, password: str | None,
                       clock: Any, timeout: float = REPLY_TIMEOUT) -> str:
    """Authenticate as tor offers (see the module docstring); returns the method used. Raises
    TorControlError with the message for the user."""
    def refused(detail: str) -> TorControlError:
        proto.close()
        return TorControlError(control_auth_message(address, detail))

    reply = await _call(proto, "PROTOCOLINFO 1", timeout, clock)
    if not reply.ok:
        proto.close()
        raise TorControlError(control_port_message(address, "PROTOCOLINFO: %s" % reply.text()))
    try:
        info = parse_protocolinfo(reply)
    except _ProtocolError as exc:
        proto._broken(str(exc))
        raise _ProtocolBroken(str(exc)) from None
    methods = info.methods
    cookie = None
    if "SAFECOOKIE" in methods or "COOKIE" in methods:
        if info.cookie_file is None:
            raise refused("tor offers cookie authentication but names no cookie file")
        try:
            cookie = _read_cookie(info.cookie_file)
        except OSError as exc:
            if not (password and "HASHEDPASSWORD" in methods):
                raise refused("cannot read its cookie file %s (%s)"
                              % (info.cookie_file, exc.strerror or exc)) from None
            log.info("Tor control: cannot read the cookie file %s (%s); using the password",
                     info.cookie_file, exc.strerror or exc)
    if cookie is not None and "SAFECOOKIE" in methods:
        method = "SAFECOOKIE"
        client_nonce = os.urandom(32)
        reply = await _call(proto, "AUTHCHALLENGE SAFECOOKIE " + client_nonce.hex(), timeout, clock)
        if not reply.ok:
            raise refused("AUTHCHALLENGE: %s" % reply.text())
        m = re.fullmatch(r"AUTHCHALLENGE SERVERHASH=(\S+) SERVERNONCE=(\S+)", reply.lines[-1])
        if m is None or not (_HEX64.match(m.group(1)) and _HEX64.match(m.group(2))):
            proto._broken("a malformed AUTHCHALLENGE reply: %r" % reply.lines[-1][:100])
            raise _ProtocolBroken("a malformed AUTHCHALLENGE reply")
        server_hash, client_hash = safecookie_hashes(cookie, client_nonce,
                                                     bytes.fromhex(m.group(2)))
        if not hmac.compare_digest(server_hash, bytes.fromhex(m.group(1))):
            raise refused("it could not prove it knows the cookie in %s (SAFECOOKIE server hash "
                          "mismatch): is this the tor that wrote that file?" % info.cookie_file)
        secret = client_hash.hex()
    elif cookie is not None:
        method, secret = "COOKIE", cookie.hex()
    elif password and "HASHEDPASSWORD" in methods:
        method, secret = "HASHEDPASSWORD", password.encode("utf-8").hex()
    elif "NULL" in methods:
        method, secret = "NULL", ""
    elif "HASHEDPASSWORD" in methods:
        raise refused("it wants a password (HashedControlPassword) and none is configured")
    else:
        raise refused("it offers no authentication method we know (%s)" % ",".join(methods))
    reply = await _call(proto, ("AUTHENTICATE " + secret).rstrip(), timeout, clock)
    if not reply.ok:
        raise refused(reply.text())
    log.debug("Tor control port %s: authenticated (%s)", address, method)
    return method


# ------------------------------------------------------------------------------ onion services

class OnionService:
    """A published service, alive as long as our control connection."""

    def __init__(self, control: TorControlProtocol, service_id: str, private_key: str | None = None):
        self.control = control
        self.service_id = service_id
        self.hostname = service_id + ".onion"
        self.private_key = private_key
        self.removed = False

    def remove(self) -> defer.Deferred:
        """DEL_ONION, then close the control connection; never fails."""
        return defer.ensureDeferred(self._remove())

    async def _remove(self) -> None:
        if self.removed:
            return
        self.removed = True
        try:
            reply = await _call(self.control, "DEL_ONION " + self.service_id, 10.0,
                                _reactor())
            if reply.ok:
                log.info("onion service %s removed", self.hostname)
            else:
                log.info("removing onion service %s: %s", self.hostname, reply.text())
        except Exception as exc:
            log.info("removing onion service %s: %s", self.hostname, exc)
        self.control.close()


def _reactor() -> Any:
    from twisted.internet import reactor
    return reactor


def load_or_create_key(hs_dir):
    """The directory's ADD_ONION key blob (``ED25519-V3:…``) from ``hs_dir``, or None if there is
    none yet (the caller saves the new one with :func:`save_key`)."""
    path = os.path.join(hs_dir, KEY_FILE)
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(_KEY_HEADER) or len(data) != len(_KEY_HEADER) + 64:
        raise TorControlError("%s is not a tor v3 onion key file" % path)
    return "ED25519-V3:" + base64.b64encode(data[len(_KEY_HEADER):]).decode("ascii")


def save_key(hs_dir, blob):
    os.makedirs(hs_dir, mode=0o700, exist_ok=True)
    raw = base64.b64decode(blob.split(":", 1)[1])
    path = os.path.join(hs_dir, KEY_FILE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(_KEY_HEADER + raw)


def _valid_key_blob(blob: str) -> bool:
    if not blob.startswith("ED25519-V3:"):
        return False
    try:
        return len(base64.b64decode(blob.split(":", 1)[1], validate=True)) == 64
    except (binascii.Error, ValueError):
        return False


def parse_add_onion(reply: ControlReply) -> tuple[str, str | None]:
    """(ServiceID, PrivateKey or None) of an ADD_ONION 250 reply; strict."""
    service_id = key = None
    for line in reply.lines:
        if line.startswith("ServiceID="):
            service_id = line[len("ServiceID="):]
        elif line.startswith("PrivateKey="):
            key = line[len("PrivateKey="):]
    if service_id is None or not _SERVICE_ID.match(service_id):
        raise _ProtocolError("an ADD_ONION reply without a v3 ServiceID: %r"
                             % " / ".join(reply.lines)[:120])
    if key is not None and not _valid_key_blob(key):
        raise _ProtocolError("an ADD_ONION reply with a malformed PrivateKey")
    return service_id, key


class _UploadWatch:
    """HS_DESC events of one service: fires on the first UPLOADED after an UPLOAD of ours, fails
    when every upload started has failed (as txtorcon did)."""

    def __init__(self) -> None:
        self.service_id: str | None = None
        self.attempted: set[str] = set()
        self.failed: set[str] = set()
        self.early: list[list[str]] = []
        self.done: defer.Deferred = defer.Deferred()

    def event(self, reply: ControlReply) -> None:
        for line in reply.lines:
            args = line.split()
            if len(args) < 5 or args[0] != "HS_DESC":
                continue
            if self.service_id is None:
                if len(self.early) < 100:
                    self.early.append(args)
                continue
            self._handle(args)

    def start(self, service_id: str) -> None:
        self.service_id = service_id
        early, self.early = self.early, []
        for args in early:
            self._handle(args)

    def _handle(self, args: list[str]) -> None:
        action, address, hsdir = args[1], args[2], args[4]
        if self.done.called:
            return
        if action == "UPLOAD" and address == self.service_id:
            self.attempted.add(hsdir)
            log.debug("onion service %s: uploading its descriptor to %s", address, hsdir)
        elif action == "UPLOADED" and hsdir in self.attempted:
            self.done.callback(None)
        elif action == "FAILED" and address == self.service_id:
            self.failed.add(hsdir)
            if self.failed >= self.attempted:
                self.done.errback(TorControlError(
                    "tor could not upload the onion service's descriptor to %s"
                    % ", ".join(sorted(self.failed))))


async def _connect(reactor: Any, host: str, port: int) -> TorControlProtocol:
    address = "%s:%d" % (host, port)
    try:
        return await connectProtocol(TCP4ClientEndpoint(reactor, host, port, timeout=10),
                                     TorControlProtocol())
    except (error.ConnectionRefusedError, error.ConnectError, error.TimeoutError,
            error.DNSLookupError) as exc:
        raise TorControlError(control_port_message(address, exc.__class__.__name__)) from exc


async def publish_onion(reactor, control_host, control_port, local_host, local_port,
                        virtual_port=ONION_SERVING_PORT, password=None, hs_dir=None,
                        timeout=REPLY_TIMEOUT):
    """Publish ``<onion>:virtual_port -> local_host:local_port``; returns an
    :class:`OnionService` once the first descriptor is uploaded. ``hs_dir`` None: an ephemeral
    service whose key tor discards (a maker)."""
    address = "%s:%d" % (control_host, control_port)
    key = load_or_create_key(hs_dir) if hs_dir is not None else None
    control = await _connect(reactor, control_host, int(control_port))
    try:
        await authenticate(control, address, password, reactor, timeout)
        watch = _UploadWatch()
        control.on_event = watch.event
        reply = await _call(control, "SETEVENTS HS_DESC", timeout, reactor)
        if not reply.ok:
            raise TorControlError(control_port_message(address, "SETEVENTS: %s" % reply.text()))
        if hs_dir is None:
            spec = "NEW:ED25519-V3 Flags=DiscardPK"
        else:
            spec = key if key is not None else "NEW:ED25519-V3"
        reply = await _call(control, "ADD_ONION %s Port=%d,%s:%d"
                            % (spec, virtual_port, local_host, local_port), timeout, reactor)
        if not reply.ok:
            raise TorControlError(
                "Tor refused to publish the onion service (ADD_ONION): %s. Check that this tor "
                "supports v3 onion services (0.3.5 or newer) and, for a directory node, that %s "
                "holds a valid key (or remove it to make a new address)."
                % (reply.text(), os.path.join(hs_dir, KEY_FILE) if hs_dir else "its key file"))
        try:
            service_id, new_key = parse_add_onion(reply)
        except _ProtocolError as exc:
            control._broken(str(exc))
            raise _ProtocolBroken(str(exc)) from None
        service = OnionService(control, service_id, new_key)
        if hs_dir is not None and key is None and new_key:
            save_key(hs_dir, new_key)
        watch.start(service_id)
        log.info("onion service %s added; waiting for tor to upload its descriptor",
                 service.hostname)

        def lost(reason: Failure) -> None:
            if not watch.done.called:
                watch.done.errback(TorControlError(
                    "the control connection closed before the descriptor was uploaded (%s)"
                    % reason.getErrorMessage()))
            elif not service.removed:
                log.warning("Tor's control connection closed: onion service %s is gone (%s)",
                            service.hostname, reason.getErrorMessage())
        control.on_lost = lost
        if control.closed is not None:
            lost(control.closed)
        await watch.done
        control.on_event = None
        await _call(control, "SETEVENTS", timeout, reactor)
        return service
    except _ProtocolBroken as exc:
        control.close()
        raise TorControlError(not_control_protocol_message(address, str(exc))) from None
    except _ConnectionProblem as exc:
        control.close()
        raise TorControlError(control_port_message(address, str(exc))) from None
    except TorControlError:
        control.close()
        raise
    except Exception as exc:
        control.close()
        raise TorControlError(control_port_message(
            address, str(exc).strip() or exc.__class__.__name__)) from exc
