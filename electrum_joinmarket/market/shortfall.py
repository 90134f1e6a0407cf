"""Why too few makers can take a coinjoin, said honestly and early.

:func:`explain` looks at the orderbook the taker collected with the rules
:func:`orders.filter_offers` applies, maker by maker, and says which rule left each maker out:
the user's fee limits (naming the cheapest offer they refuse and the limit it exceeds), the
amount outside every offer's size range (naming the smallest minimum / largest maximum), the
script type, an absurd ``txfee``, or the maker's misbehaviour earlier in this run. It also says
whether another round *can* help: only if makers were dropped for misbehaving (a new round asks
the orderbook again and may find replacements). A shortfall caused by the user's limits, the
amount, ``minimum_makers`` or a thin orderbook is reported at once instead of being retried.

Pure function over :class:`jmcore.offers.Offer` objects; no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Iterable, Optional

from electrum_joinmarket.errors import Failure
from electrum_joinmarket.market.limits import FeeLimits, format_max_rel
from electrum_joinmarket.market.orders import DEFAULT_MAX_OFFER_TXFEE, allowed_offer_types
from jmcore.offers import Offer

__all__ = ["Shortfall", "explain"]

# why a maker cannot take this coinjoin, from the most to the least "almost"
FEES, TOO_SMALL, TOO_LARGE, TYPE, TXFEE, IGNORED = ("fees", "too_small", "too_large", "type",
                                                    "txfee", "ignored")
_RANK = {FEES: 0, TOO_SMALL: 1, TOO_LARGE: 2, TXFEE: 3, TYPE: 4, IGNORED: 5}


@dataclass
class Shortfall:
    """What :func:`explain` found. ``message`` is one line for the user."""
    message: str
    failure: Failure
    retry_can_help: bool
    makers: int = 0                          # distinct makers in the book
    qualifying: int = 0
    excluded: dict = field(default_factory=dict)   # reason -> number of makers
    cheapest_refused: Optional[tuple[str, int]] = None   # (maker, fee sat) refused by the limits


def _sat(n: int) -> str:
    return f"{n:,}".replace(",", " ") + " sat"


def explain(offers: Iterable[Offer], amount: int, needed: int, *, script_type: str,
            limits: FeeLimits, ignored_makers: Collection[str] = (), sweep: bool = False,
            sweep_total_txfee: int = 0, minimum_makers: Optional[int] = None,
            max_offer_txfee: int = DEFAULT_MAX_OFFER_TXFEE) -> Shortfall:
    """Why fewer than ``needed`` makers qualify for ``amount`` (the coinjoin amount, or for a
    sweep the total input value). ``minimum_makers``: the setting, named when it is the bar."""
    types = allowed_offer_types(script_type)
    ignored = set(ignored_makers)
    best: dict[str, tuple[str, int]] = {}          # maker -> (reason or "ok", fee)
    min_minsize: Optional[int] = None
    max_maxsize: Optional[int] = None
    for o in offers:
        if not isinstance(o, Offer) or not o.counterparty:
            continue
        if o.counterparty in ignored:
            reason, fee = IGNORED, 0
        elif o.ordertype not in types:
            reason, fee = TYPE, 0
        elif o.txfee > max_offer_txfee or o.txfee >= amount:
            reason, fee = TXFEE, 0
        else:
            if not sweep:
                fits = o.minsize < amount < o.maxsize
                fee = o.real_cjfee(amount) - o.txfee
            else:
                fits = o.minsize < amount and o.maxsize > amount - sweep_total_txfee
                fee = o.real_cjfee(amount)
            if not fits:
                reason = TOO_SMALL if amount <= o.minsize else TOO_LARGE
                if reason == TOO_SMALL:
                    min_minsize = o.minsize if min_minsize is None else min(min_minsize, o.minsize)
                else:
                    max_maxsize = o.maxsize if max_maxsize is None else max(max_maxsize, o.maxsize)
            elif not limits.allows(fee, amount):
                reason = FEES
            else:
                reason = "ok"
        prev = best.get(o.counterparty)
        if prev is None or _better((reason, fee), prev):
            best[o.counterparty] = (reason, fee)
    qualifying = sorted(m for m, (r, _) in best.items() if r == "ok")
    excluded: dict[str, int] = {}
    for reason, _ in best.values():
        if reason != "ok":
            excluded[reason] = excluded.get(reason, 0) + 1
    refused = sorted(((fee, m) for m, (r, fee) in best.items() if r == FEES))
    cheapest = (refused[0][1], refused[0][0]) if refused else None
    out = Shortfall("", Failure.MAKERS, retry_can_help=bool(excluded.get(IGNORED)),
                    makers=len(best), qualifying=len(qualifying), excluded=excluded,
                    cheapest_refused=cheapest)
    what = "sweep" if sweep else f"coinjoin of {_sat(amount)}"
    if not best:
        out.message = ("the orderbook is empty: no maker answered on the configured channels "
                       "(check plugins.joinmarket.channels and the daemon's log)")
        out.retry_can_help = True
        return out
    allowance = limits.per_maker_allowance(amount)
    rel = format_max_rel(limits.max_rel)
    if len(qualifying) == 0 and cheapest is not None and excluded.get(FEES) == max(excluded.values()):
        out.failure = Failure.FEE_LIMITS
        out.message = (f"your fee limits exclude every offer for this {what}: the cheapest "
                       f"maker ({cheapest[0]}) asks {_sat(cheapest[1])}, you allow at most "
                       f"{_sat(allowance)} per maker (above both {_sat(limits.max_abs)} and "
                       f"{rel} of the amount is refused); raise plugins.joinmarket.max_cj_fee_abs "
                       f"or max_cj_fee_rel, or pass --max_cj_fee_abs/--max_cj_fee_rel")
        return out
    if len(qualifying) == 0 and excluded.get(TOO_SMALL) == len(best) and min_minsize is not None:
        out.failure = Failure.INPUT
        out.message = (f"the amount {_sat(amount)} is below every maker's minimum: the smallest "
                       f"minimum in the orderbook is {_sat(min_minsize + 1)}")
        return out
    if len(qualifying) == 0 and excluded.get(TOO_LARGE) == len(best) and max_maxsize is not None:
        out.failure = Failure.INPUT
        out.message = (f"the amount {_sat(amount)} is above every maker's maximum: the largest "
                       f"in the orderbook is {_sat(max_maxsize - 1)}")
        return out
    parts = []
    labels = {FEES: "refused by your fee limits" + (f" (cheapest asks {_sat(cheapest[1])}, you "
                                                   f"allow {_sat(allowance)})" if cheapest else ""),
              TOO_SMALL: "want a larger amount" + (f" (smallest minimum {_sat(min_minsize + 1)})"
                                                   if min_minsize is not None else ""),
              TOO_LARGE: "take a smaller amount only",
              TYPE: "use another address type", TXFEE: "ask an absurd miner fee",
              IGNORED: "misbehaved earlier in this coinjoin"}
    for reason in sorted(excluded, key=lambda r: _RANK[r]):
        parts.append(f"{excluded[reason]} {labels[reason]}")
    bar = (f" (setting plugins.joinmarket.minimum_makers = {minimum_makers})"
           if minimum_makers is not None and needed == minimum_makers else
           " (plugins.joinmarket.counterparties / --counterparties)")
    out.message = (f"only {len(qualifying)} of the {len(best)} makers in the orderbook can take "
                   f"this {what}, {needed} needed{bar}"
                   + (f": {'; '.join(parts)}" if parts else ""))
    if excluded.get(FEES) and not out.retry_can_help:
        out.failure = Failure.FEE_LIMITS
    return out


def _better(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Is (reason, fee) ``a`` closer to qualifying than ``b``?"""
    if a[0] == "ok" or b[0] == "ok":
        return a[0] == "ok" and (b[0] != "ok" or a[1] < b[1])
    return (_RANK[a[0]], a[1]) < (_RANK[b[0]], b[1])

