"""JoinMarket offers: parsing, validation and fee arithmetic.

An offer on the wire is ``!<ordertype> <oid> <minsize> <maxsize> <txfee> <cjfee>``
(docs/protocol.md §4.2), e.g. ``!sw0reloffer 0 27300 100000000 0 0.00002``.

Validation follows the reference taker's orderbook checks (§4.3, Ref
``OrderbookWatch.on_order_seen``) and is deliberately a little *stricter*
where the reference would accept nonsense, because this is untrusted input:

* integer fields are plain ASCII decimal (``[0-9]+``; the reference's ``int()``
  would also take ``+5``, `` 5``, ``1_0`` or non-ASCII digits);
* ``0 <= oid <= sys.maxsize``; ``0 <= minsize, maxsize <= 21e14``; ``0 <= txfee
  <= 21e14`` (the reference has no upper bound on txfee);
* ``minsize`` below 27 300 is lifted to 27 300 (reference behaviour), and then
  ``minsize <= maxsize`` is required;
* absolute ``cjfee``: an integer (sign allowed, as ``int()`` allows) with
  ``|cjfee| <= 21e14``; relative ``cjfee``: a finite decimal number (Python
  ``Decimal`` syntax without NaN/Infinity, at most 40 characters) with
  ``|cjfee| <= 1``, stored canonically as ``str(Decimal(cjfee))`` like the
  reference orderbook;
* exactly five fields after the order type, unless ``allow_extra_fields``.

Every rejection raises :class:`OfferError` (a ``ValueError``); nothing else is
raised for any input string.

Fee arithmetic is bit-exact with the reference (``jmclient/support.py``):
relative fees use ``Decimal`` in a fixed context equal to Python's default
(precision 28, ROUND_HALF_EVEN), independent of the caller's decimal context.

Standard library only.
"""
from __future__ import annotations

import decimal
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence, Union

from .constants import (
    ABS_OFFER_TYPES,
    COMMAND_PREFIX,
    DUST_THRESHOLD,
    MAX_OID,
    MAX_SATOSHIS,
    OFFER_TYPE_SCRIPT,
    OFFER_TYPES,
    REL_OFFER_TYPES,
)
from .errors import OfferError

__all__ = [
    "Offer", "OfferError", "parse_offer", "parse_offer_fields", "parse_offers", "split_commands",
    "parse_cancel", "canonical_cjfee", "calc_cj_fee", "is_within_max_limits",
    "calc_zero_change_cj_amount", "maker_change",
]

FeeLike = Union[int, str, Decimal]

# Python's default decimal context, pinned so that a caller's context cannot change results.
_CTX = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN, Emin=-999999, Emax=999999,
                       capitals=1, clamp=0, flags=[],
                       traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow])
_ONE = Decimal(1)

_UINT_RE = re.compile(r"[0-9]{1,20}\Z")
_SINT_RE = re.compile(r"-?[0-9]{1,20}\Z")
_DEC_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,6})?\Z")
_MAX_REL_CJFEE = Decimal(1)
_MAX_DEC_LEN = 40


def _uint(field: str, value: str, maximum: int) -> int:
    if not isinstance(value, str) or not _UINT_RE.match(value):
        raise OfferError(f"{field}: not a non-negative integer: {str(value)[:30]!r}")
    n = int(value)
    if n > maximum:
        raise OfferError(f"{field}: {n} out of range (max {maximum})")
    return n


def _int_value(field: str, value: Any, lo: int, hi: int) -> int:
    """An int from an int or a canonical decimal string (orderbook JSON rows)."""
    if isinstance(value, bool):
        raise OfferError(f"{field}: bool is not an integer")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and _SINT_RE.match(value):
        n = int(value)
    else:
        raise OfferError(f"{field}: not an integer: {str(value)[:30]!r}")
    if not lo <= n <= hi:
        raise OfferError(f"{field}: {n} out of range [{lo}, {hi}]")
    return n


def canonical_cjfee(ordertype: str, cjfee: FeeLike) -> str:
    """Validate ``cjfee`` for ``ordertype`` and return its canonical string:
    ``str(int)`` for absolute offers, ``str(Decimal(cjfee))`` for relative ones
    (what the reference orderbook stores).  Raises :class:`OfferError`."""
    if ordertype in ABS_OFFER_TYPES:
        if isinstance(cjfee, bool):
            raise OfferError("cjfee: bool is not an integer")
        if isinstance(cjfee, int):
            n = cjfee
        elif isinstance(cjfee, str) and _SINT_RE.match(cjfee):
            n = int(cjfee)
        elif isinstance(cjfee, Decimal) and cjfee.is_finite() and cjfee == cjfee.to_integral_value():
            n = int(cjfee)
        else:
            raise OfferError(f"cjfee: absolute fee must be an integer: {str(cjfee)[:30]!r}")
        if abs(n) > MAX_SATOSHIS:
            raise OfferError(f"cjfee: {n} out of range")
        return str(n)
    if ordertype in REL_OFFER_TYPES:
        if isinstance(cjfee, Decimal):
            d = cjfee
        elif isinstance(cjfee, str) and len(cjfee) <= _MAX_DEC_LEN and _DEC_RE.match(cjfee):
            d = Decimal(cjfee)
        elif isinstance(cjfee, int) and not isinstance(cjfee, bool):
            d = Decimal(cjfee)
        else:
            raise OfferError(f"cjfee: relative fee must be a decimal string: {str(cjfee)[:30]!r}")
        if not d.is_finite() or abs(d) > _MAX_REL_CJFEE:
            raise OfferError(f"cjfee: relative fee {str(cjfee)[:30]!r} out of range [-1, 1]")
        return str(d)
    raise OfferError(f"unknown order type {str(ordertype)[:30]!r}")


@dataclass(frozen=True)
class Offer:
    """One validated maker offer.

    Invariants (established by the constructors :func:`parse_offer`,
    :func:`parse_offer_fields`, :meth:`from_dict`, and checked again in
    ``__post_init__``): ``ordertype`` is one of the six offer types; all
    ranges above hold; ``DUST_THRESHOLD <= minsize <= maxsize`` unless built
    with ``lift_dusty_minsize=False``; ``cjfee`` is canonical
    (see :func:`canonical_cjfee`).
    """

    ordertype: str
    oid: int
    minsize: int
    maxsize: int
    txfee: int
    cjfee: str
    counterparty: str | None = None

    def __post_init__(self) -> None:
        if self.ordertype not in OFFER_TYPES:
            raise OfferError(f"unknown order type {str(self.ordertype)[:30]!r}")
        _int_value("oid", self.oid, 0, MAX_OID)
        _int_value("minsize", self.minsize, 0, MAX_SATOSHIS)
        _int_value("maxsize", self.maxsize, 0, MAX_SATOSHIS)
        _int_value("txfee", self.txfee, 0, MAX_SATOSHIS)
        if self.minsize > self.maxsize:
            raise OfferError(f"minsize {self.minsize} > maxsize {self.maxsize}")
        if canonical_cjfee(self.ordertype, self.cjfee) != self.cjfee:
            raise OfferError(f"cjfee {self.cjfee!r} is not canonical")
        if self.counterparty is not None and not isinstance(self.counterparty, str):
            raise OfferError("counterparty must be a str")

    # -- classification ---------------------------------------------------------------------
    @property
    def is_relative(self) -> bool:
        return self.ordertype in REL_OFFER_TYPES

    @property
    def is_absolute(self) -> bool:
        return self.ordertype in ABS_OFFER_TYPES

    @property
    def script_type(self) -> str:
        """``p2wpkh`` (sw0*), ``p2sh-p2wpkh`` (sw*) or ``p2pkh`` (legacy)."""
        return OFFER_TYPE_SCRIPT[self.ordertype]

    @property
    def cjfee_value(self) -> int | Decimal:
        """``int`` sats for absolute offers, ``Decimal`` fraction for relative ones."""
        return int(self.cjfee) if self.is_absolute else Decimal(self.cjfee)

    # -- fees -------------------------------------------------------------------------------
    def real_cjfee(self, amount: int) -> int:
        """The coinjoin fee in sats this offer charges for ``amount``."""
        return calc_cj_fee(self.ordertype, self.cjfee, amount)

    def net_fee(self, amount: int) -> int:
        """``real_cjfee - txfee``: what the taker really pays this maker (the
        reference's ranking fee and the value compared with fee limits)."""
        return self.real_cjfee(amount) - self.txfee

    def taker_amount_ok(self, amount: int) -> bool:
        """Reference taker filter: ``minsize < amount < maxsize`` (strict)."""
        return self.minsize < amount < self.maxsize

    def maker_amount_ok(self, amount: int) -> bool:
        """Reference maker ``!fill`` check: ``minsize <= amount <= maxsize``."""
        return self.minsize <= amount <= self.maxsize

    # -- serialisation ----------------------------------------------------------------------
    def to_message(self) -> str:
        """The offer as a message-layer command: ``!sw0reloffer 0 27300 ...``."""
        return (f"{COMMAND_PREFIX}{self.ordertype} {self.oid} {self.minsize} {self.maxsize} "
                f"{self.txfee} {self.cjfee}")

    def to_dict(self) -> dict[str, Any]:
        """The reference orderbook row (as in ``JMOffers``)."""
        return {"counterparty": self.counterparty, "oid": self.oid, "ordertype": self.ordertype,
                "minsize": self.minsize, "maxsize": self.maxsize, "txfee": self.txfee,
                "cjfee": self.cjfee}

    @classmethod
    def from_dict(cls, row: Mapping[str, Any], *, lift_dusty_minsize: bool = True) -> "Offer":
        """Validate one orderbook row (``JMOffers`` JSON, or a maker's offer
        dict).  Numeric fields may be ints or decimal strings.  Raises
        :class:`OfferError` for anything malformed (including a non-mapping)."""
        if not isinstance(row, Mapping):
            raise OfferError("offer row must be a JSON object")
        try:
            ordertype = row["ordertype"]
            fields = [row["oid"], row["minsize"], row["maxsize"], row["txfee"], row["cjfee"]]
        except KeyError as exc:
            raise OfferError(f"offer row lacks {exc.args[0]!r}") from None
        counterparty = row.get("counterparty")
        if counterparty is not None and not isinstance(counterparty, str):
            raise OfferError("counterparty must be a str")
        if not isinstance(ordertype, str) or ordertype not in OFFER_TYPES:
            raise OfferError(f"unknown order type {str(ordertype)[:30]!r}")
        oid = _int_value("oid", fields[0], 0, MAX_OID)
        minsize = _int_value("minsize", fields[1], 0, MAX_SATOSHIS)
        maxsize = _int_value("maxsize", fields[2], 0, MAX_SATOSHIS)
        txfee = _int_value("txfee", fields[3], 0, MAX_SATOSHIS)
        return _build(ordertype, oid, minsize, maxsize, txfee, fields[4], counterparty,
                      lift_dusty_minsize)


def _build(ordertype: str, oid: int, minsize: int, maxsize: int, txfee: int, cjfee: FeeLike,
           counterparty: str | None, lift_dusty_minsize: bool) -> Offer:
    if lift_dusty_minsize and minsize < DUST_THRESHOLD:
        minsize = DUST_THRESHOLD
    if minsize > maxsize:
        raise OfferError(f"minsize {minsize} > maxsize {maxsize}")
    return Offer(ordertype, oid, minsize, maxsize, txfee, canonical_cjfee(ordertype, cjfee),
                 counterparty)


def parse_offer_fields(ordertype: str, fields: Sequence[str], counterparty: str | None = None, *,
                       allow_extra_fields: bool = False, lift_dusty_minsize: bool = True) -> Offer:
    """Build an :class:`Offer` from the order type and the space-split fields
    ``[oid, minsize, maxsize, txfee, cjfee, ...]``.  Raises :class:`OfferError`."""
    if not isinstance(ordertype, str) or ordertype not in OFFER_TYPES:
        raise OfferError(f"unknown order type {str(ordertype)[:30]!r}")
    if len(fields) < 5 or (len(fields) > 5 and not allow_extra_fields):
        raise OfferError(f"{ordertype}: expected 5 fields, got {len(fields)}")
    oid = _uint("oid", fields[0], MAX_OID)
    minsize = _uint("minsize", fields[1], MAX_SATOSHIS)
    maxsize = _uint("maxsize", fields[2], MAX_SATOSHIS)
    txfee = _uint("txfee", fields[3], MAX_SATOSHIS)
    if not isinstance(fields[4], str):
        raise OfferError("cjfee must be a string")
    return _build(ordertype, oid, minsize, maxsize, txfee, fields[4], counterparty,
                  lift_dusty_minsize)


def parse_offer(text: str, counterparty: str | None = None, *, allow_extra_fields: bool = False,
                lift_dusty_minsize: bool = True) -> Offer:
    """Parse one offer command, with or without the leading ``!``:
    ``"!sw0reloffer 0 27300 100000000 0 0.00002"``.  Fields are separated by
    single spaces.  Raises :class:`OfferError`."""
    if not isinstance(text, str):
        raise OfferError("offer must be a str")
    if text.startswith(COMMAND_PREFIX):
        text = text[len(COMMAND_PREFIX):]
    parts = text.split(" ")
    return parse_offer_fields(parts[0], parts[1:], counterparty,
                              allow_extra_fields=allow_extra_fields,
                              lift_dusty_minsize=lift_dusty_minsize)


def split_commands(message: str) -> list[str]:
    """Split a (possibly multi-command) message ``"!a x!b y"`` into
    ``["a x", "b y"]`` (the reference splits on ``!``; text before the first
    ``!`` is dropped, as are empty pieces)."""
    if not isinstance(message, str):
        return []
    return [p for p in message.split(COMMAND_PREFIX)[1:] if p]


def parse_offers(message: str, counterparty: str | None = None, *,
                 allow_extra_fields: bool = False) -> tuple[list[Offer], list[OfferError]]:
    """Parse every offer command in a multi-command message (other commands,
    e.g. ``!tbond``, are ignored).  Returns ``(offers, errors)``: one malformed
    offer does not hide the valid ones."""
    offers: list[Offer] = []
    errors: list[OfferError] = []
    for cmd in split_commands(message):
        ordertype = cmd.split(" ", 1)[0]
        if ordertype not in OFFER_TYPES:
            continue
        try:
            offers.append(parse_offer(cmd, counterparty, allow_extra_fields=allow_extra_fields))
        except OfferError as exc:
            errors.append(exc)
    return offers, errors


def parse_cancel(text: str) -> int:
    """Parse ``!cancel <oid>`` (with or without ``!``) and return the oid."""
    if not isinstance(text, str):
        raise OfferError("cancel must be a str")
    if text.startswith(COMMAND_PREFIX):
        text = text[len(COMMAND_PREFIX):]
    parts = text.split(" ")
    if len(parts) != 2 or parts[0] != "cancel":
        raise OfferError("expected 'cancel <oid>'")
    return _uint("oid", parts[1], MAX_OID)


# ----------------------------------------------------------------------------------------
# fee arithmetic (reference jmclient/support.py)
# ----------------------------------------------------------------------------------------

def _amount(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise OfferError(f"{name} must be a non-negative int, got {value!r}")
    return value


def _rel_decimal(cjfee: FeeLike) -> Decimal:
    if isinstance(cjfee, float):
        raise OfferError("relative cjfee must be str or Decimal, not float")
    return Decimal(canonical_cjfee("sw0reloffer", cjfee))


def calc_cj_fee(ordertype: str, cjfee: FeeLike, amount: int) -> int:
    """The maker's coinjoin fee in sats for ``amount`` (reference ``calc_cj_fee``).

    * absolute offers: ``int(cjfee)``;
    * relative offers: ``int((Decimal(cjfee) * Decimal(amount)).quantize(Decimal(1)))``
      in the default decimal context, i.e. ROUND_HALF_EVEN to whole sats.

    Raises :class:`OfferError` for an unknown order type or a malformed fee.
    """
    amount = _amount("amount", amount)
    if ordertype in ABS_OFFER_TYPES:
        return int(canonical_cjfee(ordertype, cjfee))
    if ordertype in REL_OFFER_TYPES:
        if isinstance(cjfee, float):
            raise OfferError("relative cjfee must be str or Decimal, not float")
        d = Decimal(canonical_cjfee(ordertype, cjfee))
        return int(_CTX.multiply(d, Decimal(amount)).quantize(_ONE, context=_CTX))
    raise OfferError(f"unknown order type {str(ordertype)[:30]!r}")


def is_within_max_limits(fee: int, cj_amount: int, max_fee_rel: float | Decimal,
                         max_fee_abs: float | int) -> bool:
    """Reference ``_get_is_within_max_limits``: an offer's ``fee`` (its net fee)
    is rejected only if it exceeds **both** ``max_fee_abs`` and
    ``cj_amount * max_fee_rel``."""
    return not (fee > max_fee_abs and fee > cj_amount * max_fee_rel)


def _offer_field(offer: Offer | Mapping[str, Any], key: str) -> Any:
    if isinstance(offer, Offer):
        return getattr(offer, key)
    try:
        return offer[key]
    except (KeyError, TypeError):
        raise OfferError(f"offer lacks {key!r}") from None


def calc_zero_change_cj_amount(offers: Iterable[Offer | Mapping[str, Any]], total_input_value: int,
                               total_txfee: int) -> tuple[int, int]:
    """Sweep amount leaving the taker no change (reference
    ``choose_sweep_orders.calc_zero_change_cj_amount``)::

        my_txfee = max(total_txfee - sum(maker txfee), 0)
        cj = (total_in - my_txfee - sum(absfee)) / (1 + sum(relfee))   # half-even
        total_cjfee = int(sum(absfee) + sum(relfee) * cj)               # truncated

    Returns ``(cj_amount, total_cjfee)``.
    """
    total_input_value = _amount("total_input_value", total_input_value)
    total_txfee = _amount("total_txfee", total_txfee)
    sumabsfee = 0
    sumrelfee = Decimal(0)
    sumtxfee = 0
    for o in offers:
        ordertype = _offer_field(o, "ordertype")
        sumtxfee += _int_value("txfee", _offer_field(o, "txfee"), 0, MAX_SATOSHIS)
        cjfee = _offer_field(o, "cjfee")
        if ordertype in ABS_OFFER_TYPES:
            sumabsfee += int(canonical_cjfee(ordertype, cjfee))
        elif ordertype in REL_OFFER_TYPES:
            sumrelfee = _CTX.add(sumrelfee, _rel_decimal(cjfee))
        else:
            raise OfferError(f"unknown order type {str(ordertype)[:30]!r}")
    my_txfee = max(total_txfee - sumtxfee, 0)
    denominator = _CTX.add(_ONE, sumrelfee)
    if denominator <= 0:
        raise OfferError("sum of relative fees <= -1")
    cj = _CTX.divide(Decimal(total_input_value - my_txfee - sumabsfee), denominator)
    cj_amount = int(cj.quantize(_ONE, context=_CTX))
    total_fee = int(_CTX.add(Decimal(sumabsfee), _CTX.multiply(sumrelfee, Decimal(cj_amount))))
    return cj_amount, total_fee


def maker_change(total_maker_inputs: int, cj_amount: int, txfee: int, real_cjfee: int) -> int:
    """Expected maker change: ``Σmaker_in − cj_amount − txfee + real_cjfee``
    (both sides compute it; §8.1, §9)."""
    return total_maker_inputs - cj_amount - txfee + real_cjfee
