"""SOCKS5 as Tor speaks it (RFC 1928, RFC 1929, Tor's socks-extensions): the bytes, the
reply codes and what they mean to a user. No I/O here; the daemon (Twisted) and the plugin
(asyncio) each drive these with their own sockets. Standard library only.

Stream isolation: Tor puts streams whose SOCKS username/password differ on different circuits
(``IsolateSOCKSAuth``, on by default in tor and Tor Browser). :func:`isolation_credentials`
gives fresh random credentials for one connection.
"""
from __future__ import annotations

import os
import struct
from typing import Optional

__all__ = [
    "VERSION", "METHOD_NO_AUTH", "METHOD_USERPASS", "METHOD_NONE_ACCEPTABLE", "CMD_CONNECT",
    "CMD_TOR_RESOLVE", "REPLY_TEXT", "SocksProtocolError", "greeting", "parse_method_choice",
    "userpass_request", "parse_userpass_reply", "connect_request", "parse_reply",
    "TOR_PROBE_REQUEST", "TOR_PROBE_REPLY", "isolation_credentials", "reply_text",
    "ONION_REPLY_CODES",
]

VERSION = 5
METHOD_NO_AUTH = 0x00
METHOD_USERPASS = 0x02
METHOD_NONE_ACCEPTABLE = 0xFF
CMD_CONNECT = 0x01
CMD_TOR_RESOLVE = 0xF0
ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 0x01, 0x03, 0x04

REPLY_TEXT = {
    0x00: "succeeded",
    0x01: "general SOCKS server failure",
    0x02: "connection not allowed by ruleset",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused",
    0x06: "TTL expired (the connection timed out inside Tor)",
    0x07: "command not supported",
    0x08: "address type not supported",
    # Tor's extended errors for onion services (SocksPort ... ExtendedErrors)
    0xF0: "onion service descriptor not found (the service is offline or unknown)",
    0xF1: "onion service descriptor is invalid",
    0xF2: "onion service introduction failed",
    0xF3: "onion service rendezvous failed",
    0xF4: "onion service needs client authorization",
    0xF5: "onion service client authorization is wrong",
    0xF6: "onion service address is invalid",
    0xF7: "onion service introduction timed out",
}
ONION_REPLY_CODES = frozenset(range(0xF0, 0xF8))

# "tor-resolve 0.0.0.0" (Tor's RESOLVE extension on an IP literal, answered by tor itself without
# touching the network): only a Tor SOCKS port answers it with exactly TOR_PROBE_REPLY.
TOR_PROBE_REQUEST = b"\x05\x01\x00" + b"\x05\xf0\x00\x03\x070.0.0.0\x00\x00"
TOR_PROBE_REPLY = b"\x05\x00" + b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00"


class SocksProtocolError(ValueError):
    """The proxy answered something that is not SOCKS5."""


def reply_text(code: int) -> str:
    return REPLY_TEXT.get(code, f"unknown SOCKS error 0x{code:02x}")


def greeting(with_auth: bool) -> bytes:
    """Method negotiation: username/password only (for isolation), or no authentication."""
    return bytes([VERSION, 1, METHOD_USERPASS if with_auth else METHOD_NO_AUTH])


def parse_method_choice(data: bytes) -> Optional[int]:
    """The method the proxy chose (None until 2 bytes arrived)."""
    if len(data) < 2:
        return None
    if data[0] != VERSION:
        raise SocksProtocolError(f"not a SOCKS5 proxy (answered version byte 0x{data[0]:02x})")
    return data[1]


def userpass_request(username: bytes, password: bytes) -> bytes:
    if not 0 < len(username) < 256 or not 0 < len(password) < 256:
        raise ValueError("SOCKS username/password must be 1-255 bytes")
    return bytes([1, len(username)]) + username + bytes([len(password)]) + password


def parse_userpass_reply(data: bytes) -> Optional[bool]:
    """True if the credentials were accepted (None until 2 bytes arrived)."""
    if len(data) < 2:
        return None
    return data[1] == 0


def connect_request(host: str, port: int) -> bytes:
    """CONNECT to a host *name* (the proxy resolves it: no DNS query leaves this machine)."""
    name = host.encode("idna") if not host.isascii() else host.encode("ascii")
    if not 0 < len(name) < 256 or not 0 < port < 65536:
        raise ValueError(f"bad SOCKS destination {host!r}:{port}")
    return bytes([VERSION, CMD_CONNECT, 0, ATYP_DOMAIN, len(name)]) + name + struct.pack("!H", port)


def parse_reply(data: bytes) -> Optional[tuple[int, int]]:
    """``(reply_code, length_of_the_reply)`` once a whole CONNECT reply arrived, else None."""
    if len(data) < 5:
        return None
    if data[0] != VERSION:
        raise SocksProtocolError(f"not a SOCKS5 reply (version byte 0x{data[0]:02x})")
    code, atyp = data[1], data[3]
    if atyp == ATYP_IPV4:
        length = 4 + 4 + 2
    elif atyp == ATYP_IPV6:
        length = 4 + 16 + 2
    elif atyp == ATYP_DOMAIN:
        length = 4 + 1 + data[4] + 2
    elif code != 0:
        return code, len(data)      # some proxies send a short failure reply
    else:
        raise SocksProtocolError(f"bad address type 0x{atyp:02x} in SOCKS reply")
    if len(data) < length:
        return None
    return code, length


def isolation_credentials(label: str = "ejm") -> tuple[bytes, bytes]:
    """Fresh random SOCKS credentials: a stream using them gets circuits of its own."""
    return (f"{label}-{os.urandom(8).hex()}".encode("ascii"), os.urandom(12).hex().encode("ascii"))
