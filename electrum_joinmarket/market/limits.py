"""The user's coinjoin fee limits: the one type and the one parser.

Every place that takes fee limits from a person — the plugin settings, the command arguments,
the coinjoin form, the settings dialog — goes through :func:`parse_fee_limits` (or its two
halves), so they all accept the same input and say the same thing when it is wrong.

Invariants:

* **No default.** Nothing in the plugin invents a fee limit: :func:`parse_fee_limits` raises
  :class:`FeeLimitsUnset` while either limit is missing, and :class:`FeeLimits` has no default
  for either, so an unset limit can never silently mean "pay any fee" (docs/architecture.md invariant 1;
  the reference prompts the user in the same situation).
* **No float rounding.** The relative limit is a :class:`~decimal.Decimal` parsed from the text
  the user typed (``"0.004"``, ``"0.4%"``, ``"0.4 %"``); a float argument is taken by its
  ``repr`` (what was typed), never by its binary value.
* **Reference rule** (``_get_is_within_max_limits``): a maker's fee is refused only when it
  exceeds *both* ``max_abs`` sats and ``max_rel × amount``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from electrum_joinmarket.errors import Failure, UserError
from jmcore.constants import ABSURD_FEE_PER_KB, MAX_MAKER_INPUTS, MAX_SATOSHIS, MAX_SWEEP_FEE_CHANGE
from jmcore.offers import is_within_max_limits

__all__ = ["FeeLimits", "FeeLimitsUnset", "FeeLimitError", "parse_fee_limits", "parse_max_abs",
           "parse_max_rel", "format_max_rel", "ABS_EXAMPLE", "REL_EXAMPLE"]

ABS_EXAMPLE = "20000"
REL_EXAMPLE = "0.004"

_SATS_RE = re.compile(r"[0-9]{1,16}\Z")
_SEPARATORS = (" ", "_", ",", "\u202f", "\u00a0", "'")
_MAX_TEXT = 40


class FeeLimitsUnset(UserError):
    """The user has not set both coinjoin fee limits (the reference prompts; we refuse to guess)."""

    failure = Failure.FEE_LIMITS
    SUGGESTION = (f"set plugins.joinmarket.max_cj_fee_rel (e.g. {REL_EXAMPLE}) and "
                  f"plugins.joinmarket.max_cj_fee_abs (e.g. {ABS_EXAMPLE} sats), or give both "
                  f"to the coinjoin")

    def __init__(self) -> None:
        super().__init__(f"coinjoin fee limits are not set: {self.SUGGESTION}")


class FeeLimitError(UserError, ValueError):
    """A fee limit that is not a valid value; the message says what a valid one looks like."""


ABS_HELP = f"The absolute fee limit is a whole number of sats per maker, e.g. {ABS_EXAMPLE}"
REL_HELP = (f"The relative fee limit is a fraction of the amount between 0 and 1, e.g. "
            f"{REL_EXAMPLE} (or 0.4%)")


def parse_max_abs(value: Any) -> int:
    """The absolute limit (sats per maker) from an int or typed text: ``20000``, ``"20 000"``,
    ``"20,000 sat"``. Raises :class:`FeeLimitError`."""
    if isinstance(value, bool):
        raise FeeLimitError(ABS_HELP)
    if isinstance(value, int):
        n = value
    elif isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        n = int(value)
    elif isinstance(value, str) and len(value) <= _MAX_TEXT:
        text = value.strip().lower()
        for suffix in ("sats", "sat"):
            if text.endswith(suffix):
                text = text[: -len(suffix)]
                break
        for sep in _SEPARATORS:
            text = text.replace(sep, "")
        if not _SATS_RE.match(text):
            raise FeeLimitError(f"{ABS_HELP} (got {value.strip()[:20]!r})")
        n = int(text)
    else:
        raise FeeLimitError(ABS_HELP)
    if not 0 <= n <= MAX_SATOSHIS:
        raise FeeLimitError(ABS_HELP)
    return n


def parse_max_rel(value: Any) -> Decimal:
    """The relative limit (a fraction of the amount) from typed text — ``"0.004"``, ``"0.4%"``,
    ``"0.4 %"`` — a Decimal, an int (0 or 1) or a float (taken by its repr). Raises
    :class:`FeeLimitError`."""
    if isinstance(value, bool):
        raise FeeLimitError(REL_HELP)
    try:
        if isinstance(value, Decimal):
            rel = value
        elif isinstance(value, int):
            rel = Decimal(value)
        elif isinstance(value, float):
            rel = Decimal(repr(value))
        elif isinstance(value, str) and len(value) <= _MAX_TEXT:
            text = value.strip()
            percent = text.endswith("%")
            if percent:
                text = text[:-1].strip()
            rel = Decimal(text)
            if percent and rel.is_finite():
                rel = rel / 100
        else:
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        shown = f" (got {value.strip()[:20]!r})" if isinstance(value, str) else ""
        raise FeeLimitError(REL_HELP + shown) from None
    if not rel.is_finite() or rel < 0 or rel > 1:
        shown = f" (got {value.strip()[:20]!r})" if isinstance(value, str) else ""
        raise FeeLimitError(REL_HELP + shown)
    return rel


def format_max_rel(rel: Decimal) -> str:
    """The canonical text of a relative limit, as stored in the config (``"0.004"``)."""
    return format(rel.normalize(), "f")


def _is_unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse_fee_limits(max_abs: Any, max_rel: Any) -> "FeeLimits":
    """Both limits as :class:`FeeLimits`. Raises :class:`FeeLimitsUnset` if either is missing
    (None or empty text), :class:`FeeLimitError` if either is malformed."""
    if _is_unset(max_abs) or _is_unset(max_rel):
        raise FeeLimitsUnset()
    return FeeLimits(parse_max_abs(max_abs), parse_max_rel(max_rel))


@dataclass(frozen=True)
class FeeLimits:
    """The user's coinjoin fee limits (Ref ``max_cj_fee_abs`` sats, ``max_cj_fee_rel`` fraction)
    and the fixed policy caps the taker applies with them.

    ``max_abs`` must be an int (typed text goes through :func:`parse_max_abs`); ``max_rel`` is
    read with :func:`parse_max_rel` and stored as a Decimal in [0, 1].
    """
    max_abs: int
    max_rel: Decimal
    absurd_fee_per_kb: int = ABSURD_FEE_PER_KB
    max_sweep_fee_change: float = MAX_SWEEP_FEE_CHANGE
    max_inputs_per_maker: int = MAX_MAKER_INPUTS

    def __post_init__(self) -> None:
        if isinstance(self.max_abs, bool) or not isinstance(self.max_abs, int) or self.max_abs < 0:
            raise FeeLimitError(f"max_cj_fee_abs must be a non-negative int, got {self.max_abs!r}")
        object.__setattr__(self, "max_rel", parse_max_rel(self.max_rel))

    def allows(self, fee: int, amount: int) -> bool:
        """Ref rule: refuse only if ``fee`` exceeds both the absolute and the relative limit."""
        return is_within_max_limits(fee, amount, self.max_rel, self.max_abs)

    def per_maker_allowance(self, amount: int) -> int:
        """The most one maker may cost us: ``max(max_abs, floor(max_rel × amount))``."""
        return max(self.max_abs, int(Decimal(amount) * self.max_rel))

    def describe(self) -> str:
        """``20 000 sat or 0.4 % per maker``."""
        pct = format((self.max_rel * 100).normalize(), "f")
        return f"{self.max_abs:,} sat or {pct} % per maker".replace(",", " ")

    def as_settings(self) -> dict[str, Any]:
        """The two config values (``max_cj_fee_abs`` int, ``max_cj_fee_rel`` canonical text)."""
        return {"max_cj_fee_abs": self.max_abs, "max_cj_fee_rel": format_max_rel(self.max_rel)}
