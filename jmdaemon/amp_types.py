"""Twisted AMP argument types that JoinMarket's jmbase adds to twisted's own (docs/protocol.md §10.1).

* ``JsonEncodable`` - the value is JSON text (ASCII) in one AMP value.
* ``BigString`` / ``BigUnicode`` - the value is split over keys ``name.0``, ``name.1``, ... of at most
  65 535 bytes each, so it escapes AMP's per-value limit. An empty value produces no keys at all.
"""
from __future__ import annotations

import json
from typing import Any

from twisted.protocols import amp

CHUNK_MAX = amp.MAX_VALUE_LENGTH  # 65535


class JsonEncodable(amp.String):
    """JSON value (any JSON-serialisable object) carried as ASCII JSON text."""

    def toString(self, inObject: Any) -> bytes:
        encoded: bytes = super().toString(json.dumps(inObject).encode("ascii"))
        return encoded

    def fromString(self, inString: bytes) -> Any:
        return json.loads(super().fromString(inString))


class BigString(amp.Argument):
    """Bytes of any length, chunked over ``name.0``, ``name.1``, ... keys."""

    def to_bytes(self, value: object) -> bytes:
        if not isinstance(value, bytes):
            raise TypeError("BigString needs bytes")
        return value

    def from_bytes(self, data: bytes) -> Any:
        return data

    def toBox(self, name: bytes, strings: dict[bytes, bytes], objects: dict[str, Any],
              proto: Any) -> None:
        value = self.retrieve(objects, amp._wireNameToPythonIdentifier(name), proto)
        data = self.to_bytes(value)
        for i in range(0, len(data), CHUNK_MAX):
            strings[b"%s.%d" % (name, i // CHUNK_MAX)] = data[i:i + CHUNK_MAX]

    def fromBox(self, name: bytes, strings: dict[bytes, bytes], objects: dict[str, Any],
                proto: Any) -> None:
        parts: list[bytes] = []
        i = 0
        while True:
            chunk = strings.pop(b"%s.%d" % (name, i), None)
            if not chunk:
                break
            parts.append(chunk)
            i += 1
        objects[amp._wireNameToPythonIdentifier(name)] = self.from_bytes(b"".join(parts))


class BigUnicode(BigString):
    """Text of any length, UTF-8 encoded and chunked like BigString."""

    def to_bytes(self, value: object) -> bytes:
        if not isinstance(value, str):
            raise TypeError("BigUnicode needs str")
        return value.encode("utf-8")

    def from_bytes(self, data: bytes) -> Any:
        return data.decode("utf-8")


def make_argument(type_name: str) -> amp.Argument:
    """Build a twisted amp.Argument instance from a jmcore schema type name."""
    simple: dict[str, type[amp.Argument]] = {
        "Unicode": amp.Unicode,
        "Integer": amp.Integer,
        "Boolean": amp.Boolean,
        "String": amp.String,
        "BigUnicode": BigUnicode,
        "BigString": BigString,
        "JsonEncodable": JsonEncodable,
        "Json": JsonEncodable,
    }
    if type_name in simple:
        return simple[type_name]()
    if type_name.startswith("ListOf(") and type_name.endswith(")"):
        return amp.ListOf(make_argument(type_name[len("ListOf("):-1]))
    raise ValueError("unknown AMP argument type: %r" % (type_name,))
