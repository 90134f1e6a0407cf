"""AMP (Asynchronous Messaging Protocol) for asyncio, wire-compatible with
Twisted's ``twisted.protocols.amp`` and JoinMarket 0.9.12's argument types.

Wire format (Twisted ``AmpBox.serialize`` / ``BinaryBoxProtocol``):

* a *box* is a sequence of ``uint16-BE len || key || uint16-BE len || value``
  pairs terminated by an empty key (``00 00``);
* keys are 1..255 bytes, values 0..65 535 bytes;
* keys are written in **sorted (bytes) order**, exactly like Twisted, so equal
  boxes serialize to equal bytes;
* a request carries ``_command`` (command name) and ``_ask`` (tag: the
  per-connection counter in lower-case hex, ``1``, ``2``, ... as Twisted's
  ``_nextTag``); an answer carries ``_answer`` (the tag) and the response keys;
  an error carries ``_error`` (the tag), ``_error_code`` and
  ``_error_description``.  A command without ``_ask`` gets no reply.

Argument codecs (one per type name of :mod:`jmcore.commands`):

==================  =============================================================
``Unicode``         UTF-8
``Integer``         decimal ASCII (``b"%d"``)
``Boolean``         ``True`` / ``False``
``String``          raw bytes
``JsonEncodable``   ``json.dumps(obj).encode("ascii")`` / ``json.loads``
                    (jmbase ``JsonEncodable``)
``ListOf(Unicode)`` concatenated ``uint16-BE len || utf-8 item`` (Twisted ``ListOf``)
``BigUnicode``      UTF-8 split into 65 535-byte chunks under keys ``name.0``,
                    ``name.1``, ... (jmbase ``BigString``/``BigUnicode``); the
                    empty string is sent as *no key at all*; decoding joins
                    ``name.0``, ``name.1``, ... up to the first missing or empty
                    chunk.
==================  =============================================================

Invariants:

* :class:`BoxParser` never raises anything but :class:`BoxParseError` whatever
  bytes it is fed; after such an error the stream is unusable and
  :class:`AMPProtocol` closes the connection (as Twisted does).
* Decoding a box never raises anything but :class:`AMPDecodeError`; encoding
  never raises anything but :class:`AMPEncodeError`.
* :class:`AMPProtocol` never lets bad input from the peer escape into the event
  loop: malformed boxes are logged and dropped, commands it cannot decode or
  does not handle are answered with an AMP error box (``UNKNOWN`` /
  ``UNHANDLED``), answers for unknown tags are dropped.
* Pending calls are failed with :class:`AMPConnectionLost` when the connection
  ends.

Standard library only.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import struct
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence, Union

from .commands import (
    BIG_UNICODE,
    BOOLEAN,
    COMMANDS,
    INTEGER,
    JSON,
    LIST_OF_UNICODE,
    STRING,
    UNICODE,
    Arg,
    CommandSpec,
)
from .errors import (
    AMPConnectionLost,
    AMPDecodeError,
    AMPEncodeError,
    AMPError,
    AMPRemoteError,
    BoxParseError,
    UnknownCommand,
)

__all__ = [
    "MAX_KEY_LENGTH", "MAX_VALUE_LENGTH", "DEFAULT_MAX_BOX_SIZE",
    "ASK", "COMMAND", "ANSWER", "ERROR", "ERROR_CODE", "ERROR_DESCRIPTION",
    "UNKNOWN_ERROR_CODE", "UNHANDLED_ERROR_CODE",
    "encode_box", "BoxParser",
    "encode_value", "decode_value", "encode_arguments", "decode_arguments",
    "encode_list_of_unicode", "decode_list_of_unicode", "split_big_value",
    "request_box", "answer_box", "error_box",
    "Responder", "AMPProtocol", "connect", "serve",
    "AMPError", "AMPRemoteError", "AMPConnectionLost", "AMPDecodeError", "AMPEncodeError",
    "BoxParseError",
]

log = logging.getLogger("jmcore.amp")

MAX_KEY_LENGTH = 0xFF
MAX_VALUE_LENGTH = 0xFFFF
DEFAULT_MAX_BOX_SIZE = 64 * 1024 * 1024
"""Largest box (serialized bytes) :class:`BoxParser` accepts by default.  Twisted
has no such limit; 64 MiB is far above any JoinMarket message (an orderbook of
thousands of offers is a few MB) and bounds memory use on garbage input."""

ASK = b"_ask"
COMMAND = b"_command"
ANSWER = b"_answer"
ERROR = b"_error"
ERROR_CODE = b"_error_code"
ERROR_DESCRIPTION = b"_error_description"

UNKNOWN_ERROR_CODE = "UNKNOWN"
"""Error code Twisted sends when a responder failed with an undeclared error."""
UNHANDLED_ERROR_CODE = "UNHANDLED"
"""Error code Twisted sends for a command no responder handles (unknown command)."""

_U16 = struct.Struct("!H")
_INT_RE = re.compile(rb"-?[0-9]+\Z")


# ----------------------------------------------------------------------------------------
# box framing
# ----------------------------------------------------------------------------------------

def encode_box(box: Mapping[bytes, bytes]) -> bytes:
    """Serialize one AMP box exactly like Twisted's ``AmpBox.serialize``:
    keys sorted, each key and value prefixed with its uint16-BE length,
    terminated by ``00 00``.

    Raises :class:`AMPEncodeError` for non-bytes keys/values, an empty key,
    a key over 255 bytes or a value over 65 535 bytes.
    """
    out: list[bytes] = []
    try:
        items = sorted(box.items())
    except TypeError as exc:
        raise AMPEncodeError(f"box keys must all be bytes: {exc}") from None
    for k, v in items:
        if not isinstance(k, (bytes, bytearray)) or not isinstance(v, (bytes, bytearray)):
            raise AMPEncodeError(f"box keys and values must be bytes, got {type(k).__name__}:"
                                 f"{type(v).__name__}")
        if not k:
            raise AMPEncodeError("empty box key")
        if len(k) > MAX_KEY_LENGTH:
            raise AMPEncodeError(f"box key longer than {MAX_KEY_LENGTH} bytes: {bytes(k[:40])!r}...")
        if len(v) > MAX_VALUE_LENGTH:
            raise AMPEncodeError(f"value of {bytes(k)!r} longer than {MAX_VALUE_LENGTH} bytes "
                                 f"({len(v)})")
        out.append(_U16.pack(len(k)))
        out.append(bytes(k))
        out.append(_U16.pack(len(v)))
        out.append(bytes(v))
    out.append(b"\x00\x00")
    return b"".join(out)


class BoxParser:
    """Incremental AMP box parser.

    ``feed(data)`` appends bytes and returns the list of boxes completed by
    them (possibly empty).  A box is returned as ``dict[bytes, bytes]``; as in
    Twisted a repeated key overwrites the earlier value, and an empty box
    (a lone ``00 00``) is returned as ``{}`` for the caller to reject.

    Invariants: only :class:`BoxParseError` is ever raised (key longer than 255
    bytes, or the current box growing beyond ``max_box_size``).  Boxes completed
    before the bad bytes are still returned (as Twisted would deliver them): the
    error is then raised by the *next* ``feed`` and is visible at once in
    :attr:`error`.  Once failed, the parser stays failed.
    """

    def __init__(self, max_box_size: int = DEFAULT_MAX_BOX_SIZE) -> None:
        if max_box_size < 2:
            raise ValueError("max_box_size too small")
        self.max_box_size = max_box_size
        self._buf = bytearray()
        self._box: dict[bytes, bytes] = {}
        self._box_size = 0          # serialized bytes consumed for the current box
        self._failed: BoxParseError | None = None

    @property
    def error(self) -> BoxParseError | None:
        """The framing error that ended this stream, if any."""
        return self._failed

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a returned box."""
        return self._box_size + len(self._buf)

    def feed(self, data: bytes) -> list[dict[bytes, bytes]]:
        """Consume ``data``; return the boxes it completes, in order."""
        if self._failed is not None:
            raise self._failed
        self._buf += data
        boxes: list[dict[bytes, bytes]] = []
        buf = self._buf
        pos = 0
        n = len(buf)
        try:
            while True:
                if n - pos < 2:
                    break
                (klen,) = _U16.unpack_from(buf, pos)
                if klen == 0:
                    pos += 2
                    boxes.append(self._box)
                    self._box = {}
                    self._box_size = 0
                    continue
                if klen > MAX_KEY_LENGTH:
                    raise BoxParseError(f"AMP key length {klen} exceeds {MAX_KEY_LENGTH}")
                if n - pos < 2 + klen + 2:
                    self._check_size(n - pos)
                    break
                (vlen,) = _U16.unpack_from(buf, pos + 2 + klen)
                total = 2 + klen + 2 + vlen
                self._check_size(total)
                if n - pos < total:
                    break
                key = bytes(buf[pos + 2:pos + 2 + klen])
                self._box[key] = bytes(buf[pos + 4 + klen:pos + total])
                self._box_size += total
                pos += total
        except BoxParseError as exc:
            self._failed = exc
            self._buf = bytearray()
            self._box = {}
            if not boxes:
                raise
        finally:
            if self._failed is None and pos:
                del buf[:pos]
        return boxes

    def _check_size(self, pending: int) -> None:
        if self._box_size + pending + 2 > self.max_box_size:
            raise BoxParseError(f"AMP box larger than {self.max_box_size} bytes")


# ----------------------------------------------------------------------------------------
# argument codecs
# ----------------------------------------------------------------------------------------

def encode_list_of_unicode(items: Iterable[str]) -> bytes:
    """Twisted ``ListOf(Unicode()).toString``: each item as uint16-BE length +
    UTF-8 bytes, concatenated.  Raises :class:`AMPEncodeError`."""
    if isinstance(items, (str, bytes, bytearray)):
        raise AMPEncodeError("ListOf(Unicode) needs a list of str, not a single string")
    parts: list[bytes] = []
    for item in items:
        if not isinstance(item, str):
            raise AMPEncodeError(f"ListOf(Unicode) item must be str, got {type(item).__name__}")
        b = _utf8(item)
        if len(b) > MAX_VALUE_LENGTH:
            raise AMPEncodeError("ListOf(Unicode) item longer than 65535 bytes")
        parts.append(_U16.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def decode_list_of_unicode(value: bytes) -> list[str]:
    """Inverse of :func:`encode_list_of_unicode`.  Trailing bytes that do not
    form a whole item (Twisted would silently ignore them) raise
    :class:`AMPDecodeError`, as does invalid UTF-8."""
    out: list[str] = []
    pos, n = 0, len(value)
    while pos < n:
        if n - pos < 2:
            raise AMPDecodeError("truncated ListOf length prefix")
        (ln,) = _U16.unpack_from(value, pos)
        pos += 2
        if n - pos < ln:
            raise AMPDecodeError("truncated ListOf item")
        out.append(_from_utf8(value[pos:pos + ln]))
        pos += ln
    return out


def split_big_value(data: bytes) -> list[bytes]:
    """Split ``data`` into ``MAX_VALUE_LENGTH``-byte chunks (jmbase
    ``split_string``); ``b""`` gives ``[]``."""
    return [data[i:i + MAX_VALUE_LENGTH] for i in range(0, len(data), MAX_VALUE_LENGTH)]


def _utf8(s: str) -> bytes:
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise AMPEncodeError(f"string not encodable as UTF-8: {exc}") from None


def _from_utf8(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AMPDecodeError(f"invalid UTF-8: {exc}") from None


def _big_key(name: str, i: int) -> bytes:
    return b"%s.%d" % (name.encode("ascii"), i)


def encode_value(type_name: str, name: str, value: Any) -> dict[bytes, bytes]:
    """Encode one argument ``name`` of AMP type ``type_name`` into box entries.

    Returns a dict because ``BigUnicode`` may produce several keys (or none,
    for the empty string).  Raises :class:`AMPEncodeError` on a wrong Python
    type or an over-long value; values are type-checked strictly (``bool`` is
    not accepted as ``Integer``, only ``bool`` as ``Boolean``).
    """
    key = name.encode("ascii")
    if type_name == UNICODE:
        if not isinstance(value, str):
            raise AMPEncodeError(f"{name}: Unicode needs str, got {type(value).__name__}")
        raw = _utf8(value)
    elif type_name == INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise AMPEncodeError(f"{name}: Integer needs int, got {type(value).__name__}")
        raw = b"%d" % value
    elif type_name == BOOLEAN:
        if not isinstance(value, bool):
            raise AMPEncodeError(f"{name}: Boolean needs bool, got {type(value).__name__}")
        raw = b"True" if value else b"False"
    elif type_name == STRING:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise AMPEncodeError(f"{name}: String needs bytes, got {type(value).__name__}")
        raw = bytes(value)
    elif type_name == JSON:
        try:
            raw = json.dumps(value).encode("ascii")
        except (TypeError, ValueError, RecursionError) as exc:
            raise AMPEncodeError(f"{name}: not JSON-encodable: {exc}") from None
    elif type_name == LIST_OF_UNICODE:
        raw = encode_list_of_unicode(value)
    elif type_name == BIG_UNICODE:
        if not isinstance(value, str):
            raise AMPEncodeError(f"{name}: BigUnicode needs str, got {type(value).__name__}")
        return {_big_key(name, i): chunk for i, chunk in enumerate(split_big_value(_utf8(value)))}
    else:
        raise AMPEncodeError(f"unknown AMP argument type {type_name!r}")
    if len(raw) > MAX_VALUE_LENGTH:
        raise AMPEncodeError(f"{name}: encoded {type_name} is {len(raw)} bytes, more than "
                             f"{MAX_VALUE_LENGTH}")
    return {key: raw}


def decode_value(type_name: str, name: str, box: Mapping[bytes, bytes]) -> Any:
    """Decode argument ``name`` of AMP type ``type_name`` from ``box``.

    A missing key raises :class:`AMPDecodeError`, except for ``BigUnicode``
    where absence means ``""`` (that is how the reference sends it).
    Only :class:`AMPDecodeError` is raised.
    """
    if type_name == BIG_UNICODE:
        chunks: list[bytes] = []
        i = 0
        while True:
            chunk = box.get(_big_key(name, i))
            if not chunk:
                break
            chunks.append(chunk)
            i += 1
        return _from_utf8(b"".join(chunks))
    raw = box.get(name.encode("ascii"))
    if raw is None:
        raise AMPDecodeError(f"missing argument {name!r}")
    if type_name == UNICODE:
        return _from_utf8(raw)
    if type_name == INTEGER:
        if len(raw) > 4000 or not _INT_RE.match(raw):
            raise AMPDecodeError(f"{name}: bad Integer {raw[:40]!r}")
        return int(raw)
    if type_name == BOOLEAN:
        if raw == b"True":
            return True
        if raw == b"False":
            return False
        raise AMPDecodeError(f"{name}: bad Boolean {raw[:40]!r}")
    if type_name == STRING:
        return bytes(raw)
    if type_name == JSON:
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            raise AMPDecodeError(f"{name}: bad JSON: {exc}") from None
    if type_name == LIST_OF_UNICODE:
        return decode_list_of_unicode(raw)
    raise AMPDecodeError(f"unknown AMP argument type {type_name!r}")


def encode_arguments(args: Sequence[Arg], values: Mapping[str, Any]) -> dict[bytes, bytes]:
    """Encode ``values`` per the argument list ``args``.  Every argument must be
    present and no unknown name may be given (:class:`AMPEncodeError`)."""
    names = {a.name for a in args}
    extra = [k for k in values if k not in names]
    if extra:
        raise AMPEncodeError(f"unexpected argument(s) {sorted(extra)}")
    box: dict[bytes, bytes] = {}
    for a in args:
        if a.name not in values:
            raise AMPEncodeError(f"missing argument {a.name!r}")
        box.update(encode_value(a.type, a.name, values[a.name]))
    return box


def decode_arguments(args: Sequence[Arg], box: Mapping[bytes, bytes]) -> dict[str, Any]:
    """Decode the arguments ``args`` from ``box`` (extra keys are ignored, as
    in Twisted).  Raises :class:`AMPDecodeError`."""
    return {a.name: decode_value(a.type, a.name, box) for a in args}


def request_box(command: CommandSpec, tag: bytes | None, values: Mapping[str, Any]) -> dict[bytes, bytes]:
    """The request box for ``command`` with ``values``; ``tag`` is the ``_ask``
    value (``None``: no answer requested)."""
    box = encode_arguments(command.arguments, values)
    box[COMMAND] = command.wire_name
    if tag is not None:
        box[ASK] = tag
    return box


def answer_box(command: CommandSpec, tag: bytes, response: Mapping[str, Any]) -> dict[bytes, bytes]:
    """The answer box to ``command`` carrying ``response`` (extra keys in
    ``response`` are ignored, as in Twisted)."""
    box = encode_arguments(command.response,
                           {a.name: response[a.name] for a in command.response if a.name in response})
    box[ANSWER] = tag
    return box


def error_box(tag: bytes, code: str, description: str) -> dict[bytes, bytes]:
    """An ``_error`` box.  The code and description are truncated to fit the
    value limit rather than failing."""
    return {
        ERROR: tag,
        ERROR_CODE: code.encode("utf-8", "replace")[:MAX_VALUE_LENGTH],
        ERROR_DESCRIPTION: description.encode("utf-8", "replace")[:MAX_VALUE_LENGTH],
    }


# ----------------------------------------------------------------------------------------
# protocol
# ----------------------------------------------------------------------------------------

Responder = Callable[..., Union[Mapping[str, Any], Awaitable[Mapping[str, Any]]]]
"""A command handler: called with the decoded arguments as keyword arguments,
returns (or returns an awaitable of) the response mapping, e.g.
``{"accepted": True}``.  It may raise :class:`AMPRemoteError` to send a given
error code, or an exception whose class name is a key of the command's
``errors`` to send that error code (as Twisted's ``Command.errors``)."""


class _Pending:
    __slots__ = ("spec", "future", "raw")

    def __init__(self, spec: CommandSpec | None, future: asyncio.Future[Any], raw: bool) -> None:
        self.spec = spec
        self.future = future
        self.raw = raw


class AMPProtocol(asyncio.Protocol):
    """One AMP connection (client or server side; AMP is symmetric).

    * ``await call_remote("JMInit", bcsource=..., ...)`` sends a command and
      returns the decoded response (``{"accepted": True}``); it raises
      :class:`AMPRemoteError` if the peer answers with an error,
      :class:`AMPConnectionLost` if the connection ends first,
      :class:`UnknownCommand` / :class:`AMPEncodeError` locally for a bad call.
    * Incoming commands are dispatched to ``responders[name]``.  Synchronous
      responders run immediately, in arrival order (like Twisted responders);
      async ones run as tasks.  A command with no responder (or not in the
      schema) is answered with error code ``UNHANDLED`` and description
      ``"Unhandled Command: b'Name'"`` (Twisted's text).
    * Invariant: nothing received from the peer can raise out of
      ``data_received``; a framing error closes the connection.
    """

    def __init__(self, responders: Mapping[str, Responder] | None = None, *,
                 commands: Mapping[str, CommandSpec] = COMMANDS,
                 max_box_size: int = DEFAULT_MAX_BOX_SIZE) -> None:
        self.commands = commands
        self.responders: dict[str, Responder] = {}
        for name, responder in (responders or {}).items():
            self.register(name, responder)
        self.transport: asyncio.Transport | None = None
        self._parser = BoxParser(max_box_size)
        self._counter = 0
        self._pending: dict[bytes, _Pending] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed_reason: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._made: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] | None = None

    # -- registration --------------------------------------------------------------

    def register(self, name: str, responder: Responder) -> None:
        """Handle incoming command ``name`` with ``responder`` (replaces any)."""
        if name not in self.commands:
            raise UnknownCommand(f"unknown AMP command {name!r}")
        self.responders[name] = responder

    def unregister(self, name: str) -> None:
        self.responders.pop(name, None)

    # -- state ----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.transport is not None and self._closed_reason is None

    def _futures(self) -> tuple[asyncio.Future[None], asyncio.Future[None]]:
        if self._made is None or self._lost is None:
            loop = self._loop or asyncio.get_running_loop()
            self._loop = loop
            self._made = loop.create_future()
            self._lost = loop.create_future()
        return self._made, self._lost

    async def wait_connected(self) -> None:
        """Return once the connection is made."""
        made, _ = self._futures()
        await asyncio.shield(made)

    async def wait_closed(self) -> None:
        """Return once the connection is lost (never raises)."""
        _, lost = self._futures()
        await asyncio.shield(lost)

    def close(self) -> None:
        """Close the connection; pending calls fail with AMPConnectionLost."""
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        made, _ = self._futures()
        if not made.done():
            made.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._closed_reason is not None:
            return
        try:
            boxes = self._parser.feed(data)
        except BoxParseError:
            boxes = []
        for box in boxes:
            try:
                self._box_received(box)
            except Exception:  # defensive: a bug must not kill the loop's reader
                log.exception("error handling AMP box")
        exc = self._parser.error
        if exc is not None:
            log.warning("AMP framing error from peer, closing connection: %s", exc)
            self._shutdown(AMPConnectionLost(f"AMP framing error: {exc}"))
            if self.transport is not None:
                self.transport.close()  # flushes replies already written, stops reading

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        reason = AMPConnectionLost(f"AMP connection lost: {exc}" if exc else "AMP connection closed")
        self._shutdown(reason)
        _, lost = self._futures()
        if not lost.done():
            lost.set_result(None)

    def _shutdown(self, reason: AMPConnectionLost) -> None:
        if self._closed_reason is None:
            self._closed_reason = reason
        pending, self._pending = self._pending, {}
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(reason)

    # -- sending ------------------------------------------------------------------------

    def _next_tag(self) -> bytes:
        self._counter += 1
        return b"%x" % self._counter

    def _send(self, box: Mapping[bytes, bytes]) -> None:
        self._send_bytes(encode_box(box))

    def _start_call(self, spec: CommandSpec | None, box: dict[bytes, bytes],
                    raw: bool) -> asyncio.Future[Any]:
        if self._closed_reason is not None:
            raise self._closed_reason
        if self.transport is None:
            raise AMPConnectionLost("AMP connection not made yet")
        tag = self._next_tag()
        box[ASK] = tag
        data = encode_box(box)  # may raise AMPEncodeError before registering
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[tag] = _Pending(spec, fut, raw)
        try:
            self._send_bytes(data)
        except AMPConnectionLost:
            self._pending.pop(tag, None)
            raise
        def forget_if_cancelled(f: asyncio.Future[Any]) -> None:
            if f.cancelled():
                self._pending.pop(tag, None)
        fut.add_done_callback(forget_if_cancelled)
        return fut

    def _send_bytes(self, data: bytes) -> None:
        if self.transport is None or self._closed_reason is not None or self.transport.is_closing():
            raise AMPConnectionLost("AMP connection is closed")
        self.transport.write(data)

    async def call_remote(self, command: str, /, **kwargs: Any) -> dict[str, Any]:
        """Send ``command`` with ``kwargs`` and await its decoded response."""
        spec = self.commands.get(command)
        if spec is None:
            raise UnknownCommand(f"unknown AMP command {command!r}")
        box = request_box(spec, None, kwargs)
        answer: dict[str, Any] = await self._start_call(spec, box, raw=False)
        return answer

    async def call_remote_raw(self, command: str, box: Mapping[bytes, bytes] | None = None
                              ) -> dict[bytes, bytes]:
        """Low-level call: send ``_command=command`` plus the raw ``box`` entries
        and return the raw answer box.  Errors still raise AMPRemoteError."""
        b = dict(box or {})
        b[COMMAND] = command.encode("utf-8")
        answer: dict[bytes, bytes] = await self._start_call(None, b, raw=True)
        return answer

    def send_raw_box(self, box: Mapping[bytes, bytes]) -> None:
        """Write one box as is (no tag bookkeeping).  For tests and tools."""
        self._send(box)

    # -- receiving -----------------------------------------------------------------------

    def _box_received(self, box: dict[bytes, bytes]) -> None:
        if ANSWER in box:
            self._answer_received(box)
        elif ERROR in box:
            self._error_received(box)
        elif COMMAND in box:
            self._command_received(box)
        else:
            log.warning("dropping AMP box with no _answer/_error/_command (%d keys)", len(box))

    def _answer_received(self, box: dict[bytes, bytes]) -> None:
        p = self._pending.pop(box[ANSWER], None)
        if p is None:
            log.warning("dropping AMP answer for unknown tag %r", box[ANSWER][:20])
            return
        if p.future.done():
            return
        if p.raw or p.spec is None:
            p.future.set_result(dict(box))
            return
        try:
            result = decode_arguments(p.spec.response, box)
        except AMPDecodeError as exc:
            p.future.set_exception(exc)
        else:
            p.future.set_result(result)

    def _error_received(self, box: dict[bytes, bytes]) -> None:
        p = self._pending.pop(box[ERROR], None)
        if p is None:
            log.warning("dropping AMP error for unknown tag %r", box[ERROR][:20])
            return
        if p.future.done():
            return
        code = box.get(ERROR_CODE, UNKNOWN_ERROR_CODE.encode()).decode("utf-8", "replace")
        desc = box.get(ERROR_DESCRIPTION, b"").decode("utf-8", "replace")
        p.future.set_exception(AMPRemoteError(code, desc))

    def _command_received(self, box: dict[bytes, bytes]) -> None:
        raw_name = box[COMMAND]
        tag = box.get(ASK)
        try:
            name = raw_name.decode("ascii")
        except UnicodeDecodeError:
            name = ""
        spec = self.commands.get(name)
        responder = self.responders.get(name) if spec is not None else None
        if spec is None or responder is None:
            log.info("unhandled AMP command %r", raw_name[:80])
            self._reply_error(tag, UNHANDLED_ERROR_CODE, f"Unhandled Command: {raw_name!r}")
            return
        try:
            kwargs = decode_arguments(spec.arguments, box)
        except AMPDecodeError as exc:
            log.warning("bad arguments for AMP command %s: %s", name, exc)
            self._reply_error(tag, UNKNOWN_ERROR_CODE, f"Bad arguments for {name}: {exc}")
            return
        try:
            result = responder(**kwargs)
        except Exception as exc:
            self._reply_exception(spec, tag, exc)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._finish_async(spec, tag, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._reply_result(spec, tag, result)

    async def _finish_async(self, spec: CommandSpec, tag: bytes | None,
                            awaitable: Awaitable[Mapping[str, Any]]) -> None:
        try:
            result = await awaitable
        except asyncio.CancelledError:
            self._reply_error(tag, UNKNOWN_ERROR_CODE, "Unknown Error")
            raise
        except Exception as exc:
            self._reply_exception(spec, tag, exc)
            return
        self._reply_result(spec, tag, result)

    def _reply_result(self, spec: CommandSpec, tag: bytes | None, result: Any) -> None:
        if tag is None:
            return
        try:
            if not isinstance(result, Mapping):
                raise AMPEncodeError(f"responder returned {type(result).__name__}, not a mapping")
            missing = [a.name for a in spec.response if a.name not in result]
            if missing:
                raise AMPEncodeError(f"response lacks {missing}")
            box = answer_box(spec, tag, result)
        except AMPEncodeError as exc:
            log.error("responder for %s gave a bad response: %s", spec.name, exc)
            self._reply_error(tag, UNKNOWN_ERROR_CODE, "Unknown Error")
            return
        self._write_reply(box)

    def _reply_exception(self, spec: CommandSpec, tag: bytes | None, exc: BaseException) -> None:
        if isinstance(exc, AMPRemoteError):
            self._reply_error(tag, exc.code, exc.description)
        elif type(exc).__name__ in spec.errors:
            self._reply_error(tag, spec.errors[type(exc).__name__], str(exc))
        else:
            log.error("responder for %s failed", spec.name, exc_info=exc)
            self._reply_error(tag, UNKNOWN_ERROR_CODE, "Unknown Error")

    def _reply_error(self, tag: bytes | None, code: str, description: str) -> None:
        if tag is None:
            return
        self._write_reply(error_box(tag, code, description))

    def _write_reply(self, box: Mapping[bytes, bytes]) -> None:
        try:
            self._send(box)
        except AMPConnectionLost:
            log.debug("AMP reply dropped: connection closed")


async def connect(host: str, port: int, responders: Mapping[str, Responder] | None = None, *,
                  ssl: Any = None, commands: Mapping[str, CommandSpec] = COMMANDS,
                  max_box_size: int = DEFAULT_MAX_BOX_SIZE) -> AMPProtocol:
    """Open a TCP (optionally TLS) connection to an AMP peer and return the
    connected :class:`AMPProtocol`.  Raises ``OSError`` if it cannot connect."""
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(
        lambda: AMPProtocol(responders, commands=commands, max_box_size=max_box_size),
        host, port, ssl=ssl)
    return proto


async def serve(host: str, port: int,
                responders_factory: Callable[[AMPProtocol], Mapping[str, Responder]], *,
                ssl: Any = None, commands: Mapping[str, CommandSpec] = COMMANDS,
                max_box_size: int = DEFAULT_MAX_BOX_SIZE) -> asyncio.AbstractServer:
    """Listen for AMP connections.  For every connection a new
    :class:`AMPProtocol` is made and ``responders_factory(proto)`` supplies its
    responders (so they can call back on that connection).  Returns the
    listening ``asyncio`` server (``port=0`` picks a free port; read it from
    ``server.sockets[0].getsockname()``)."""
    loop = asyncio.get_running_loop()

    def factory() -> AMPProtocol:
        proto = AMPProtocol(None, commands=commands, max_box_size=max_box_size)
        for name, responder in responders_factory(proto).items():
            proto.register(name, responder)
        return proto

    return await loop.create_server(factory, host, port, ssl=ssl)
