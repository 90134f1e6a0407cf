"""Offer filtering and choice for the taker (docs/protocol.md §8.1–8.2, Ref ``jmclient/support.py``).

Pure logic over :class:`jmcore.offers.Offer` objects: no network, no wallet (Electrum only through
the plugin's exception base).
Every random draw goes through an injectable :class:`random.Random` (tests pass a seeded one;
the default is :class:`random.SystemRandom`, so a network observer cannot predict our choice).

Security invariants enforced here (each pinned by ``tests/plugin/test_orders.py``):

* **Fee limits (M12).** An offer is dropped when its fee exceeds *both* ``max_cj_fee_abs`` and
  ``max_cj_fee_rel × amount`` (Ref ``_get_is_within_max_limits``); ``amount`` is the coinjoin
  amount, or the total input value for sweeps.  Fee limits have no default here: the caller must
  pass the user's :class:`~electrum_joinmarket.market.limits.FeeLimits`, so an unset limit can
  never silently mean "pay anything".
* **Absurd txfee (M12).** An offer's ``txfee`` (the maker's miner-fee contribution) lowers its
  ranking fee ``real_cjfee − txfee``.  An absurd ``txfee`` would make a (possibly hostile) maker
  look cheapest and capture the fee-weighted and cheapest choosers, only to fail later (it cannot
  fund such a change).  Offers whose ``txfee`` exceeds ``max_offer_txfee`` or is not below the
  amount are therefore dropped.
* **Size range.** Non-sweep: ``minsize < cj_amount < maxsize`` (strict, as Ref's taker).
* **Script type.** Only offers for our own script type: ``sw0*`` for p2wpkh wallets, ``sw*`` for
  p2sh-p2wpkh; anything else (legacy p2pkh offers, unknown types) is refused.
* **Distinct makers.** One offer per counterparty (its cheapest), and a counterparty is removed
  from the pool once chosen; fewer than ``n`` qualifying makers raises :class:`NotEnoughMakers`
  (nothing is chosen partially).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Any, Callable, Collection, Iterable, Mapping, Optional, Sequence

from electrum_joinmarket.errors import Failure, JoinMarketError
from electrum_joinmarket.logs import get_logger
from electrum_joinmarket.market.limits import FeeLimits
from jmcore.constants import BONDLESS_MAKERS_ALLOWANCE, SW0_OFFER_TYPES, SW_OFFER_TYPES
from jmcore.errors import OfferError
from jmcore.offers import Offer, calc_cj_fee, calc_zero_change_cj_amount

__all__ = [
    "BONDLESS_MAKERS_ALLOWANCE", "DEFAULT_MAX_OFFER_TXFEE", "DEFAULT_CHOOSER",
    "OrderChoiceError", "NotEnoughMakers",
    "Candidate", "SweepChoice", "Chooser",
    "offers_from_rows", "allowed_offer_types", "filter_offers",
    "cheapest_order_choose", "uniform_order_choose", "fee_weighted_order_choose",
    "make_fidelity_bond_chooser", "fidelity_bond_weighted_order_choose", "CHOOSERS", "get_chooser",
    "choose_orders", "choose_sweep_orders", "total_cj_fee",
]

_log = get_logger(__name__)

# BONDLESS_MAKERS_ALLOWANCE (jmcore.constants): Ref ``bondless_makers_allowance``, per slot the
# probability of a uniform draw over all makers.

DEFAULT_MAX_OFFER_TXFEE: int = 100_000
"""Largest believable maker miner-fee contribution (sats).  One p2wpkh input + two outputs is
~130 vB; 100 000 sats covers that even at ~750 sat/vB.  Ref makers default to txfee 0."""

DEFAULT_CHOOSER: str = "fidelity_bond"


class OrderChoiceError(JoinMarketError, ValueError):
    """The offers cannot satisfy the request (amount, limits, makers)."""

    failure = Failure.MAKERS


class NotEnoughMakers(OrderChoiceError):
    """Fewer than ``needed`` distinct makers qualify."""

    def __init__(self, needed: int, available: int, amount: int):
        super().__init__(f"not enough liquidity in the orderbook: need {needed} makers, "
                         f"{available} qualify for amount {amount}")
        self.needed, self.available, self.amount = needed, available, amount


@dataclass(frozen=True)
class Candidate:
    """One offer that passed the filters, with the fee used to rank it.

    ``fee`` is in sats: ``real_cjfee(amount) − txfee`` (Ref's ranking fee; for the sweep filter
    Ref ranks by ``real_cjfee(total_input)``).  ``bond_value`` is the maker's fidelity bond value
    (0 if it has none or its bond failed verification).
    """
    offer: Offer
    fee: int
    bond_value: float = 0.0

    @property
    def counterparty(self) -> str:
        return self.offer.counterparty  # type: ignore[return-value]  # filter_offers ensures str


@dataclass(frozen=True)
class SweepChoice:
    """Result of :func:`choose_sweep_orders`."""
    orders: list[Candidate]
    cj_amount: int
    total_cjfee: int


Chooser = Callable[[Sequence[Candidate], int, random.Random], Candidate]
"""``chooser(candidates_sorted_by_fee, n, rng) -> one candidate``."""


def offers_from_rows(rows: Any) -> list[Offer]:
    """The valid offers among the daemon's orderbook rows (``JMOffers``: JSON objects with
    counterparty, oid, ordertype, minsize, maxsize, txfee, cjfee). Every row goes through jmcore's
    offer validation (:meth:`jmcore.offers.Offer.from_dict`); a bad row is dropped with a debug
    line, never raised (invariant 4)."""
    out: list[Offer] = []
    for row in rows if isinstance(rows, list) else []:
        try:
            out.append(Offer.from_dict(row))
        except OfferError as exc:
            _log.debug("dropped offer row %r: %s", str(row)[:200], exc)
    return out


def allowed_offer_types(script_type: str) -> tuple[str, ...]:
    """Offer types a wallet of ``script_type`` can join (§4.2): p2wpkh → ``sw0*``,
    p2sh-p2wpkh → ``sw*``.  Other wallet types cannot take part (ValueError)."""
    if script_type == "p2wpkh":
        return SW0_OFFER_TYPES
    if script_type == "p2sh-p2wpkh":
        return SW_OFFER_TYPES
    raise ValueError(f"wallet script type {script_type!r} cannot join JoinMarket coinjoins")


def _check_amount(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return n


def filter_offers(offers: Iterable[Offer], amount: int, *, script_type: str, limits: FeeLimits,
                  ignored_makers: Collection[str] = (),
                  bond_values: Optional[Mapping[str, float]] = None,
                  max_offer_txfee: int = DEFAULT_MAX_OFFER_TXFEE,
                  sweep_total_txfee: Optional[int] = None) -> list[Candidate]:
    """The offers we may choose from, cheapest per counterparty, sorted by fee (then nick, oid).

    Non-sweep (``sweep_total_txfee is None``): ``amount`` is the coinjoin amount; keeps offers with
    ``minsize < amount < maxsize`` and ranks by ``real_cjfee(amount) − txfee``.
    Sweep: ``amount`` is the total input value; keeps ``minsize < amount`` and
    ``maxsize > amount − sweep_total_txfee`` and ranks by ``real_cjfee(amount)`` (Ref
    ``choose_sweep_orders``).  In both cases the fee limits are applied to that fee and amount.
    Offers without a counterparty, from ignored makers, of another script type, or with an
    absurd ``txfee`` are dropped.
    """
    amount = _check_amount("amount", amount)
    types = allowed_offer_types(script_type)
    if sweep_total_txfee is not None and (isinstance(sweep_total_txfee, bool)
                                          or not isinstance(sweep_total_txfee, int)
                                          or sweep_total_txfee < 0):
        raise ValueError(f"sweep_total_txfee must be a non-negative int, got {sweep_total_txfee!r}")
    ignored = set(ignored_makers)
    bonds = bond_values or {}
    best: dict[str, Candidate] = {}
    for o in offers:
        if not isinstance(o, Offer) or not isinstance(o.counterparty, str) or not o.counterparty:
            continue
        if o.counterparty in ignored or o.ordertype not in types:
            continue
        if o.txfee > max_offer_txfee or o.txfee >= amount:
            continue                                                     # absurd txfee (M12)
        if sweep_total_txfee is None:
            if not (o.minsize < amount < o.maxsize):                     # strict (Ref taker)
                continue
            fee = o.real_cjfee(amount) - o.txfee
        else:
            if not (o.minsize < amount and o.maxsize > amount - sweep_total_txfee):
                continue
            fee = o.real_cjfee(amount)
        if not limits.allows(fee, amount):                               # M12
            continue
        bond = bonds.get(o.counterparty, 0.0)
        if not isinstance(bond, (int, float)) or not math.isfinite(bond) or bond < 0:
            bond = 0.0
        cand = Candidate(o, fee, float(bond))
        prev = best.get(o.counterparty)
        if prev is None or (cand.fee, cand.offer.oid) < (prev.fee, prev.offer.oid):
            best[o.counterparty] = cand
    return sorted(best.values(), key=lambda c: (c.fee, c.counterparty, c.offer.oid))


# ---------------------------------------------------------------------------------------------
# choosers (Ref support.py); each takes the fee-sorted candidates, n and an rng


def cheapest_order_choose(candidates: Sequence[Candidate], n: int, rng: random.Random) -> Candidate:
    """The cheapest offer (Ref ``cheapest_order_choose``)."""
    return candidates[0]


def uniform_order_choose(candidates: Sequence[Candidate], n: int, rng: random.Random) -> Candidate:
    """Uniform over all candidates (Ref ``random_under_max_order_choose``)."""
    return candidates[rng.randrange(len(candidates))]


def fee_weighted_order_choose(candidates: Sequence[Candidate], n: int, rng: random.Random) -> Candidate:
    """Exponential fee weighting (Ref ``weighted_order_choose``): ``P ∝ exp(−(f − fmin)/φ)``,
    ``φ = fee[3n] − fmin`` if there are more than 3n candidates, else ``fee[-1] − fmin``;
    ``φ = 0`` ⇒ uniform.  ``candidates`` must be sorted by fee."""
    fmin = candidates[0].fee
    m = 3 * n
    phi = (candidates[m].fee if len(candidates) > m else candidates[-1].fee) - fmin
    if phi > 0:
        weights = [math.exp(-(c.fee - fmin) / phi) for c in candidates]
    else:
        weights = [1.0] * len(candidates)
    return rng.choices(candidates, weights=weights, k=1)[0]


def make_fidelity_bond_chooser(bondless_allowance: float = BONDLESS_MAKERS_ALLOWANCE) -> Chooser:
    """Fidelity-bond weighting (Ref ``fidelity_bond_weighted_order_choose`` without the optional
    ``tx_max_expected_probability`` cap): with probability ``bondless_allowance`` a uniform draw
    over all candidates; otherwise a draw over bonded candidates proportional to bond value
    (uniform over all if none is bonded)."""
    if not (0.0 <= bondless_allowance <= 1.0):
        raise ValueError("bondless_allowance must be in [0, 1]")

    def fidelity_bond_weighted_order_choose(candidates: Sequence[Candidate], n: int,
                                            rng: random.Random) -> Candidate:
        if rng.random() < bondless_allowance:
            return uniform_order_choose(candidates, n, rng)
        bonded = [c for c in candidates if c.bond_value > 0]
        if not bonded:
            return uniform_order_choose(candidates, n, rng)
        return rng.choices(bonded, weights=[c.bond_value for c in bonded], k=1)[0]

    return fidelity_bond_weighted_order_choose


fidelity_bond_weighted_order_choose: Chooser = make_fidelity_bond_chooser()

CHOOSERS: Mapping[str, Chooser] = {
    "fidelity_bond": fidelity_bond_weighted_order_choose,
    "fee_weighted": fee_weighted_order_choose,
    "cheapest": cheapest_order_choose,
    "uniform": uniform_order_choose,
}


def get_chooser(name: str, *, bondless_allowance: float = BONDLESS_MAKERS_ALLOWANCE) -> Chooser:
    """Chooser by setting name (``fidelity_bond`` honours ``bondless_allowance``)."""
    if name == "fidelity_bond":
        return make_fidelity_bond_chooser(bondless_allowance)
    try:
        return CHOOSERS[name]
    except KeyError:
        raise ValueError(f"unknown order chooser {name!r}; one of {sorted(CHOOSERS)}") from None


def _draw(pool: list[Candidate], k: int, n: int, chooser: Chooser,
          rng: random.Random) -> tuple[list[Candidate], list[Candidate]]:
    """Draw ``k`` distinct makers from ``pool`` (sorted by fee); returns (chosen, rest)."""
    chosen: list[Candidate] = []
    for _ in range(k):
        pick = chooser(pool, n, rng)
        if pick not in pool:  # a chooser must return one of the candidates it was given
            raise OrderChoiceError("order chooser returned an offer outside the pool")
        chosen.append(pick)
        pool = [c for c in pool if c.counterparty != pick.counterparty]
    return chosen, pool


def choose_orders(offers: Iterable[Offer], cj_amount: int, n: int,
                  chooser: Chooser = fidelity_bond_weighted_order_choose, *,
                  limits: FeeLimits, script_type: str = "p2wpkh",
                  ignored_makers: Collection[str] = (),
                  bond_values: Optional[Mapping[str, float]] = None,
                  rng: Optional[random.Random] = None,
                  max_offer_txfee: int = DEFAULT_MAX_OFFER_TXFEE) -> list[Candidate]:
    """Choose ``n`` offers from ``n`` distinct makers for a coinjoin of ``cj_amount`` (Ref
    ``choose_orders``).  Raises :class:`NotEnoughMakers` when fewer than ``n`` qualify."""
    cj_amount = _check_amount("cj_amount", cj_amount)
    n = _check_n(n)
    rng = rng if rng is not None else random.SystemRandom()
    pool = filter_offers(offers, cj_amount, script_type=script_type, limits=limits,
                         ignored_makers=ignored_makers, bond_values=bond_values,
                         max_offer_txfee=max_offer_txfee)
    if len(pool) < n:
        raise NotEnoughMakers(n, len(pool), cj_amount)
    chosen, _ = _draw(pool, n, n, chooser, rng)
    return chosen


def total_cj_fee(chosen: Iterable[Candidate], cj_amount: int) -> int:
    """Σ real_cjfee(cj_amount) of the chosen offers (what the taker pays makers, before their
    txfee contributions)."""
    return sum(calc_cj_fee(c.offer.ordertype, c.offer.cjfee, cj_amount) for c in chosen)


def choose_sweep_orders(offers: Iterable[Offer], total_input_value: int, total_txfee: int, n: int,
                        chooser: Chooser = fidelity_bond_weighted_order_choose, *,
                        limits: FeeLimits, script_type: str = "p2wpkh",
                        ignored_makers: Collection[str] = (),
                        bond_values: Optional[Mapping[str, float]] = None,
                        rng: Optional[random.Random] = None,
                        max_offer_txfee: int = DEFAULT_MAX_OFFER_TXFEE) -> SweepChoice:
    """Choose ``n`` makers for a sweep (no taker change) and solve the coinjoin amount (Ref
    ``choose_sweep_orders``).

    Loop: draw makers until ``n`` are held; solve ``cj_amount`` with
    :func:`jmcore.offers.calc_zero_change_cj_amount`; drop every held offer whose range excludes
    ``cj_amount`` (``minsize <= cj <= maxsize`` kept, as Ref) and draw again from the makers not
    yet tried.  Makers are never re-drawn, so the loop ends: with ``n`` fitting offers, or with
    :class:`NotEnoughMakers`.  The returned candidates carry ``fee = real_cjfee(cj) − txfee``.
    """
    total_input_value = _check_amount("total_input_value", total_input_value)
    if isinstance(total_txfee, bool) or not isinstance(total_txfee, int) or total_txfee < 0:
        raise ValueError(f"total_txfee must be a non-negative int, got {total_txfee!r}")
    n = _check_n(n)
    rng = rng if rng is not None else random.SystemRandom()
    pool = filter_offers(offers, total_input_value, script_type=script_type, limits=limits,
                         ignored_makers=ignored_makers, bond_values=bond_values,
                         max_offer_txfee=max_offer_txfee, sweep_total_txfee=total_txfee)
    held: list[Candidate] = []
    cj_amount = total_fee = 0
    while len(held) < n:
        need = n - len(held)
        if len(pool) < need:
            raise NotEnoughMakers(n, len(held) + len(pool), total_input_value)
        new, pool = _draw(pool, need, n, chooser, rng)
        held.extend(new)
        try:
            cj_amount, total_fee = calc_zero_change_cj_amount([c.offer for c in held],
                                                              total_input_value, total_txfee)
        except OfferError as exc:
            raise OrderChoiceError(f"cannot solve the sweep amount: {exc}") from None
        held = [c for c in held if c.offer.minsize <= cj_amount <= c.offer.maxsize]
    if cj_amount <= 0:
        raise OrderChoiceError(f"sweep amount {cj_amount} is not positive (inputs too small)")
    held = [replace(c, fee=c.offer.real_cjfee(cj_amount) - c.offer.txfee) for c in held]
    return SweepChoice(held, cj_amount, total_fee)
