"""Pure wire-format functions: IRC chunking, onion JSON lines, handshakes, peerlists, privmsg
layout. No I/O here, so every parser can be fuzzed directly (docs/protocol.md §2, §3, §4)."""
from __future__ import annotations

import base64
import binascii
import json
import re
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from jmcore import constants as C

from . import limits

_NICK_CHARS = re.compile(r"^[A-Za-z0-9_\-\[\]\\^{}|`]{1,64}$")


def printable(text: object, limit: int = 200) -> str:
    """Remote text made safe for a log line: at most ``limit`` characters, every character that
    is not printable (newlines, ANSI escapes, other control and format characters such as
    bidi overrides) shown as a ``\\x..``/``\\u....`` escape, and non-str values shown by their
    repr. A log line can then never be split, recoloured or forged by a peer."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    elif not isinstance(text, str):
        text = repr(text)
    cut = text[:limit]
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                  for c in cut)
    if len(text) > limit:
        out += "...(+%d chars)" % (len(text) - limit)
    return out


def valid_nick(nick: object) -> bool:
    """A JoinMarket nick as it may appear on the wire (IRC-safe, no '!' ';' ',' or spaces)."""
    return isinstance(nick, str) and bool(_NICK_CHARS.match(nick))


# ---------------------------------------------------------------- IRC (§2)

def irc_privmsg_lines(to_nick: str, cmd: str, message: str,
                      max_len: int = C.IRC_MAX_LINE_LENGTH) -> list[str]:
    """Lines (without CRLF) carrying ``!cmd message`` to ``to_nick``, chunked as Ref does."""
    header = "PRIVMSG " + to_nick + " :"
    piece_len = max_len - len(header) - len(cmd) - 4
    if piece_len < 1:
        raise ValueError("nick/command too long to chunk")
    pieces = [message[i:i + piece_len] for i in range(0, len(message), piece_len)] or [""]
    lines: list[str] = []
    for k, piece in enumerate(pieces):
        prefix = C.COMMAND_PREFIX + cmd + " " if k == 0 else ""
        trailer = " ~" if k == len(pieces) - 1 else " ;"
        lines.append(header + prefix + piece + trailer)
    return lines


def irc_announce_lines(channel: str, offerlines: Iterable[str],
                       max_len: int = C.IRC_MAX_LINE_LENGTH) -> list[str]:
    """Pack whole ``!offer ...`` strings into as few public lines as fit (trailing ' ~')."""
    header = "PRIVMSG " + channel + " :"
    lines: list[str] = []
    current: list[str] = []
    for offer in offerlines:
        candidate = header + "".join(current + [offer]) + " ~"
        if current and len(candidate) > max_len:
            lines.append(header + "".join(current) + " ~")
            current = [offer]
        else:
            current.append(offer)
    if current:
        lines.append(header + "".join(current) + " ~")
    return lines


class ChunkAssembler:
    """Reassembles chunked IRC privmsgs per sender, with bounded memory (D6).

    ``feed(sender, text)`` returns the complete message (``!cmd ...`` without trailers) when a
    ``~`` piece completes it, else None. A message over ``max_message`` characters is discarded,
    and at most ``max_senders`` partial messages are kept (the oldest is evicted).
    """

    def __init__(self, max_message: int = limits.MAX_MESSAGE_LEN, max_senders: int = 1000) -> None:
        self.max_message = max_message
        self.max_senders = max_senders
        self.buffers: OrderedDict[str, list[Any]] = OrderedDict()   # sender -> [pieces, size]
        self.dropped = 0

    def feed(self, sender: str, text: str) -> str | None:
        if len(text) < 2:
            self.buffers.pop(sender, None)
            self.dropped += 1
            return None
        trailer = text[-1]
        body = text[:-2]
        if sender not in self.buffers:
            if not text.startswith(C.COMMAND_PREFIX):
                self.dropped += 1
                return None
            if len(self.buffers) >= self.max_senders:
                self.buffers.popitem(last=False)
                self.dropped += 1
            self.buffers[sender] = [[], 0]
        entry = self.buffers[sender]
        entry[0].append(body)
        entry[1] += len(body)
        if entry[1] > self.max_message:
            del self.buffers[sender]
            self.dropped += 1
            return None
        if trailer == ";":
            return None
        del self.buffers[sender]
        if trailer == "~":
            return "".join(entry[0])
        self.dropped += 1
        return None

    def forget(self, sender: str) -> None:
        self.buffers.pop(sender, None)


def irc_sender_nick(prefix: str) -> str:
    """Nick from an IRC prefix ``nick!user@host``, cut at '!' and to 16 chars (§2)."""
    return prefix.split("!", 1)[0][:C.NICK_LENGTH]


# ---------------------------------------------------------------- onion (§3)

def encode_onion_line(msgtype: int, line: str) -> str:
    """One onion JSON line (without CRLF), key order as Ref's json.dumps."""
    return json.dumps({"type": msgtype, "line": line})


def decode_onion_line(raw: str | bytes) -> tuple[int, str]:
    """(type, line) from one received line; ValueError for anything not well-formed."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    obj = json.loads(raw)
    if not isinstance(obj, dict) or set(obj) != {"type", "line"}:
        raise ValueError("onion line must be an object with exactly 'type' and 'line'")
    msgtype, line = obj["type"], obj["line"]
    if not isinstance(msgtype, int) or isinstance(msgtype, bool) or not isinstance(line, str):
        raise ValueError("wrong field types in onion line")
    return msgtype, line


def client_handshake(nick: str, location: str, network: str,
                     features: dict[str, Any] | None = None) -> str:
    return json.dumps({"app-name": C.APP_NAME, "directory": False, "location-string": location,
                       "proto-ver": C.JM_VERSION, "features": features or {}, "nick": nick,
                       "network": network})


def directory_handshake(nick: str, network: str, accepted: bool, motd: str = "",
                        features: dict[str, Any] | None = None) -> str:
    return json.dumps({"app-name": C.APP_NAME, "directory": True,
                       "proto-ver-min": C.JM_VERSION, "proto-ver-max": C.JM_VERSION,
                       "features": features or {}, "accepted": accepted, "nick": nick,
                       "network": network, "motd": motd})


def valid_location(location: object) -> bool:
    """``host:port`` with port 1..65535, or NOT-SERVING-ONION."""
    if location == C.NOT_SERVING_ONION:
        return True
    if not isinstance(location, str) or location.count(":") != 1:
        return False
    host, port = location.split(":")
    if not host or not port.isdigit() or len(port) > 5:
        return False
    return 0 < int(port) < 65536 and all(c.isalnum() or c in ".-" for c in host)


def parse_client_handshake(line: str) -> dict[str, Any]:
    """Dict of a 793 handshake, or ValueError if malformed (field presence and types)."""
    hs = json.loads(line)
    if not isinstance(hs, dict):
        raise ValueError("handshake is not an object")
    for key, typ in (("app-name", str), ("directory", bool), ("location-string", str),
                     ("proto-ver", int), ("nick", str), ("network", str)):
        if not isinstance(hs.get(key), typ):
            raise ValueError("handshake field %s missing or wrong type" % key)
    if not valid_nick(hs["nick"]):
        raise ValueError("bad nick in handshake")
    return hs


def parse_directory_handshake(line: str) -> dict[str, Any]:
    hs = json.loads(line)
    if not isinstance(hs, dict):
        raise ValueError("dn-handshake is not an object")
    for key, typ in (("app-name", str), ("directory", bool), ("proto-ver-min", int),
                     ("proto-ver-max", int), ("accepted", bool), ("nick", str),
                     ("network", str)):
        if not isinstance(hs.get(key), typ):
            raise ValueError("dn-handshake field %s missing or wrong type" % key)
    return hs


def format_peerlist(entries: Iterable[tuple[str, str, bool]]) -> str:
    """entries: iterable of (nick, location, disconnected)."""
    return ",".join(n + ";" + loc + (";D" if gone else "") for n, loc, gone in entries)


def parse_peerlist(line: str) -> list[tuple[str, str, bool]]:
    """[(nick, location, disconnected)] from a 789 line. Three-field entries other than ``;D``
    are skipped whole (NG's ``;F:...``), longer ones dropped; bad nicks/locations dropped."""
    out: list[tuple[str, str, bool]] = []
    for entry in line.split(","):
        fields = entry.split(";")
        if len(fields) == 2:
            gone = False
        elif len(fields) == 3 and fields[2] == "D":
            gone = True
        else:
            continue
        nick, loc = fields[0], fields[1]
        if not valid_nick(nick) or not valid_location(loc):
            continue
        out.append((nick, loc, gone))
    return out


def privmsg_size(from_nick: str, to_nick: str, cmd: str, message: str) -> int:
    """Bytes of the onion line that carries ``!cmd message`` from one nick to another (CRLF
    included); IRC carries the same message in chunks of fewer bytes in total per message."""
    line = from_nick + C.COMMAND_PREFIX + to_nick + C.COMMAND_PREFIX + cmd + " " + message
    return len(encode_onion_line(C.ONION_TYPE_PRIVMSG, line).encode("utf-8")) + 2


def split_onion_message(line: str) -> tuple[str, str, str]:
    """(from_nick, to_nick, message) from ``from!to!cmd body``; message starts with '!'."""
    parts = line.split(C.COMMAND_PREFIX, 2)
    if len(parts) != 3 or not parts[2]:
        raise ValueError("onion message needs from!to!msg")
    return parts[0], parts[1], C.COMMAND_PREFIX + parts[2]


# ---------------------------------------------------------------- JM message layer (§4, §6)

def split_signed_privmsg(message: str) -> tuple[str, str, str, str] | None:
    """(cmd, body, pubkey_hex, sig_b64) of a private message ``!cmd body pub sig``.

    Returns None unless: it starts with '!', the command is known, the body between command and
    pub is non-empty, pub is hex and sig is base64 (as Ref checks before asking for verification).
    """
    if len(message) < 2 or not message.startswith(C.COMMAND_PREFIX):
        return None
    tokens = message[1:].split(" ")
    if len(tokens) < 4:
        return None
    cmd = tokens[0]
    if cmd not in C.PRIVATE_COMMANDS:
        return None
    pub, sig = tokens[-2], tokens[-1]
    body = " ".join(tokens[1:-2])
    if not body:
        return None
    try:
        bytes.fromhex(pub)
        base64.b64decode(sig, validate=True)
    except (ValueError, binascii.Error):
        return None
    if not pub or not sig:
        return None
    return cmd, body, pub, sig


B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _base58(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58_ALPHABET[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\x00"))) + out


def nick_for_pubkey(pubkey_hex: str) -> str:
    """The nick of a nick key (§6.1): ``J5`` + base58(sha256(ascii hex)[:10]), ``O``-padded."""
    import hashlib
    enc = _base58(hashlib.sha256(pubkey_hex.encode("ascii")).digest()[:C.NICK_HASH_LENGTH])
    return (C.JOINMARKET_NICK_HEADER + str(C.JM_VERSION) + enc
            + "O" * (C.NICK_MAX_ENCODED - len(enc)))


def nick_matches_pubkey(nick: str, pubkey_hex: str) -> bool:
    """Whether a private message's pubkey derives its sender's nick: the same full comparison
    as the client's (which then checks the signature). A hash, no key arithmetic: the daemon
    uses it to drop messages that cannot verify before they cost the client anything."""
    if not isinstance(nick, str) or not isinstance(pubkey_hex, str) or len(pubkey_hex) > 130:
        return False
    try:
        return nick == nick_for_pubkey(pubkey_hex)
    except UnicodeEncodeError:
        return False


def strip_signature(fullmsg: str) -> str:
    """``cmd body`` (no leading '!', no pub/sig) of a verified private message."""
    return " ".join(fullmsg[1:].split(" ")[:-2])
