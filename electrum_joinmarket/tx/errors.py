"""Why a coinjoin transaction is not built or not signed (taker and maker side)."""
from __future__ import annotations

from typing import Optional

from electrum_joinmarket.errors import Failure, JoinMarketError
from electrum_joinmarket.logs import get_logger

__all__ = ["TxBuildError", "UnsafeTransaction", "FeeLimitExceeded", "BadMakerSignature",
           "TakerTxRejected"]

_log = get_logger(__name__)


class TxBuildError(JoinMarketError):
    """The coinjoin cannot be built from the given parts (a bug or bad arguments)."""


class UnsafeTransaction(TxBuildError):
    """Signing this transaction could lose money or break an agreement; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class FeeLimitExceeded(UnsafeTransaction):
    """A maker's fee or the total fee is above the user's limits (M12)."""

    failure = Failure.FEE_LIMITS

    def __init__(self, reason: str, nick: Optional[str] = None):
        super().__init__(reason)
        self.nick = nick


class BadMakerSignature(TxBuildError):
    """A ``!sig`` that is malformed or valid for none of the maker's unsigned inputs (M9)."""

    failure = Failure.MAKERS


class TakerTxRejected(UnsafeTransaction):
    """The taker's ``!tx`` breaks our agreement; we send no ``!sig``. ``case`` names the
    docs/testing.md case (T1, T2, T3, T4, T9) or ``malformed``."""

    def __init__(self, case: str, reason: str):
        super().__init__(f"{case}: {reason}")
        self.case = case
        _log.warning("refusing the taker's transaction: %s: %s", case, reason)
