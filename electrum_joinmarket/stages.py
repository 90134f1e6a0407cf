"""The names of what the taker and the maker are doing, as enums.

Progress events, the wallet session's ``role``/``state``, outcomes and the maker's refusals
carry these members; the GUI and the commands match members, never spelled-out strings.

Every enum is a :class:`StrEnum`: a member *is* its value (``TakerStage.FILL == "fill"``), so it
is JSON-able as is, prints as its value, and what was stored in a wallet file before (history
entries, plain strings) still compares equal.  Standard library only.
"""
from __future__ import annotations

import enum

__all__ = ["StrEnum", "Role", "SessionState", "TakerStage", "OutcomeStatus",
           "MakerSessionState", "RefusalStage", "TERMINAL_STAGES"]


class StrEnum(str, enum.Enum):
    """``enum.StrEnum`` for Python 3.10 too (Electrum 4.8 supports it): ``str()`` and ``format()``
    give the value."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, format_spec: str) -> str:
        return str.__format__(self, format_spec)


class Role(StrEnum):
    """What a wallet session is running (``WalletSession.role``; None when idle)."""
    TAKER = "taker"
    MAKER = "maker"


class SessionState(StrEnum):
    """``WalletSession.state`` outside a taker run (during one it is the last :class:`TakerStage`)."""
    IDLE = "idle"
    STARTING = "starting"
    RUNNING = "running"          # a maker is up


class TakerStage(StrEnum):
    """The stages a taker reports to its ``progress`` callback, in order of a run."""
    CONNECT = "connect"
    CONNECTED = "connected"
    CHANNELS = "channels"                # the daemon's report on its message channels
    RETRY = "retry"                      # a further round with replacement makers
    ORDERBOOK = "orderbook"
    CHOSEN = "chosen"
    FILL = "fill"
    MAKER_REJECTED = "maker-rejected"    # one maker's !ioauth failed a check (case id in the event)
    MAKER_UNCHECKED = "maker-unchecked"  # the chain could not check a maker: neither used nor blamed
    IOAUTH = "ioauth"
    BUILT = "built"                      # the transaction exists (txid known), !tx not sent yet
    TX = "tx"
    SIGS = "sigs"
    BROADCAST = "broadcast"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STAGES = frozenset({TakerStage.DONE, TakerStage.FAILED, TakerStage.CANCELLED})


class OutcomeStatus(StrEnum):
    """How a taker run ended (``TakerOutcome.status``, the history's ``status``)."""
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"


class MakerSessionState(StrEnum):
    """A maker's session with one taker: answered ``!ioauth``, then signed its ``!tx``."""
    IOAUTH = "ioauth"
    SIGNED = "signed"


class RefusalStage(StrEnum):
    """Which taker message a maker refused (``Refusal.stage``)."""
    AUTH = "auth"
    TX = "tx"
    PUSH = "push"
