"""Shared exception types of ``jmcore``.

Invariant: every error that ``jmcore`` raises because of bad *input* (bytes from
the network, a malformed offer line, an AMP box that does not match the schema)
is a subclass of :class:`JMCoreError`, so callers that handle untrusted data can
catch one base class and drop the input without crashing.  Most of them also
derive from :class:`ValueError` so that generic ``except ValueError`` code keeps
working.

This module imports only the standard library.
"""
from __future__ import annotations

__all__ = [
    "JMCoreError",
    "AMPError",
    "BoxParseError",
    "AMPEncodeError",
    "AMPDecodeError",
    "AMPRemoteError",
    "AMPConnectionLost",
    "UnknownCommand",
    "OfferError",
]


class JMCoreError(Exception):
    """Base class of all jmcore errors."""


class AMPError(JMCoreError):
    """Base class of errors of the AMP layer (codec and protocol)."""


class BoxParseError(AMPError, ValueError):
    """The byte stream is not a valid AMP box stream (e.g. a key longer than
    255 bytes, or a box larger than the configured limit).

    After this error the stream is desynchronised: the connection must be
    closed (Twisted does the same).
    """


class AMPEncodeError(AMPError, ValueError):
    """A Python value cannot be encoded for an AMP argument (wrong type,
    value longer than 65 535 bytes, missing argument, ...).  Raised locally,
    before anything is written to the wire."""


class AMPDecodeError(AMPError, ValueError):
    """A received AMP box does not decode according to the command schema
    (missing key, invalid UTF-8, bad Boolean/Integer/JSON, ...)."""


class AMPRemoteError(AMPError):
    """The peer answered a command with an ``_error`` box.

    :ivar code: the ``_error_code`` value, decoded as text (e.g. ``"UNHANDLED"``,
        ``"UNKNOWN"`` or a command-specific code such as ``"daemon is not ready"``).
    :ivar description: the ``_error_description`` value, decoded as UTF-8.

    A responder may also raise this to send a specific error code back.
    """

    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


class AMPConnectionLost(AMPError, ConnectionError):
    """The AMP connection was closed while a call was pending, or a call was
    attempted on a closed connection."""


class UnknownCommand(AMPError, KeyError):
    """A command name is not part of the schema."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep it readable
        return str(self.args[0]) if self.args else "unknown command"


class OfferError(JMCoreError, ValueError):
    """An offer (``!sw0reloffer ...`` line or orderbook entry) is malformed
    or out of range."""
