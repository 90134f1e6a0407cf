"""The plugin's exception base and the kinds of failure the user is told about.

* :class:`JoinMarketError` is the base of every exception the plugin raises on purpose; anything
  else escaping is a bug (logged with its traceback, shown as "internal error").
* :class:`UserError` — something the user must change or do (a setting, the form, a password,
  start the daemon). It is Electrum's :class:`electrum.util.UserFacingException`, so Electrum
  prints its message as one line without a traceback (``electrum`` CLI, JSON-RPC, Qt).
* Every error carries a :class:`Failure` kind (class default, or per instance). Outcomes and the
  history store the kind; the GUI derives its hint from it (``gui.model.failure_hint``), never
  from the English text of the message.
"""
from __future__ import annotations

from typing import ClassVar, Optional

from electrum.util import UserFacingException

from electrum_joinmarket.stages import StrEnum

__all__ = ["Failure", "JoinMarketError", "UserError", "failure_of"]


class Failure(StrEnum):
    """Why something failed, as far as the user can act on it."""
    CANCELLED = "cancelled"      # the user cancelled: nothing spent
    DECLINED = "declined"        # the user declined the confirmation: nothing signed
    INPUT = "input"              # a value in the form, a command argument or a setting
    PASSWORD = "password"
    COINS = "coins"              # not enough confirmed, unfrozen coins (or none fit a commitment)
    FEE_LIMITS = "fee_limits"    # the offers or the transaction cost more than the user's limits
    MAKERS = "makers"            # too few makers answered, passed the checks or signed
    DAEMON = "daemon"            # no daemon, or the link to it failed
    CHAIN = "chain"              # Electrum's server could not answer a chain question
    BROADCAST = "broadcast"      # signed, but not seen on the network (yet)
    INTERNAL = "internal"        # a bug: see the log


class JoinMarketError(Exception):
    """Base of the plugin's exceptions. ``failure`` says what kind of failure this is (the class
    default unless given)."""

    failure: ClassVar[Failure] = Failure.INTERNAL

    def __init__(self, *args: object, failure: Optional[Failure] = None):
        super().__init__(*args)
        if failure is not None:
            self.failure = failure      # type: ignore[misc]  # instance override of the default


class UserError(JoinMarketError, UserFacingException):  # type: ignore[misc]  # Electrum is untyped
    """A user's mistake or something the user must do; the message says what (one line)."""

    failure = Failure.INPUT


def failure_of(exc: BaseException) -> Failure:
    """The failure kind of any exception (a cancellation, one of ours, or a bug)."""
    import asyncio
    import concurrent.futures
    if isinstance(exc, (asyncio.CancelledError, concurrent.futures.CancelledError)):
        return Failure.CANCELLED
    if isinstance(exc, JoinMarketError):
        return exc.failure
    return Failure.INTERNAL
