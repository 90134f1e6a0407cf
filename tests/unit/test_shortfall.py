"""Issue 14.6: why too few makers can take a coinjoin, from the orderbook the taker collected —
the exact one-line reasons, and whether another round could help (only when makers were dropped
for misbehaving)."""
from __future__ import annotations

from decimal import Decimal

from electrum_joinmarket.errors import Failure
from electrum_joinmarket.market.limits import FeeLimits
from electrum_joinmarket.market.shortfall import explain
from jmcore.offers import Offer


def rel(nick, cjfee, minsize=100_000, maxsize=1_000_000_000, txfee=0, oid=0):
    return Offer("sw0reloffer", oid, minsize, maxsize, txfee, cjfee, nick)


LIMITS = FeeLimits(20_000, Decimal("0.004"))         # allows max(20000, 0.004 x amount)


def test_fee_limits_exclude_every_offer_names_the_cheapest_and_the_limit():
    book = [rel("A", "0.005"), rel("B", "0.006"), rel("A", "0.007", oid=1)]
    why = explain(book, 5_000_000, 3, script_type="p2wpkh", limits=LIMITS)
    assert why.message == (
        "your fee limits exclude every offer for this coinjoin of 5 000 000 sat: the cheapest "
        "maker (A) asks 25 000 sat, you allow at most 20 000 sat per maker (above both 20 000 "
        "sat and 0.004 of the amount is refused); raise plugins.joinmarket.max_cj_fee_abs or "
        "max_cj_fee_rel, or pass --max_cj_fee_abs/--max_cj_fee_rel")
    assert why.failure == Failure.FEE_LIMITS and not why.retry_can_help
    assert why.cheapest_refused == ("A", 25_000)


def test_amount_below_every_minimum():
    book = [rel("A", "0.0002", minsize=2_000_000), rel("B", "0.0002", minsize=3_000_000)]
    why = explain(book, 1_000_000, 2, script_type="p2wpkh", limits=LIMITS)
    assert why.message == ("the amount 1 000 000 sat is below every maker's minimum: the "
                           "smallest minimum in the orderbook is 2 000 001 sat")
    assert why.failure == Failure.INPUT and not why.retry_can_help


def test_minimum_makers_is_named():
    book = [rel("A", "0.0002"), rel("B", "0.0002"), rel("C", "0.0002")]
    why = explain(book, 1_000_000, 4, script_type="p2wpkh", limits=LIMITS, minimum_makers=4)
    assert why.message == ("only 3 of the 3 makers in the orderbook can take this coinjoin of "
                           "1 000 000 sat, 4 needed (setting plugins.joinmarket.minimum_makers = 4)")
    assert not why.retry_can_help


def test_mixed_reasons_are_counted_and_misbehaviour_allows_a_retry():
    book = [rel("A", "0.0002"), rel("B", "0.02"), rel("C", "0.0002", minsize=5_000_000),
            Offer("swreloffer", 0, 100_000, 10**9, 0, "0.0002", "D"), rel("E", "0.0002")]
    why = explain(book, 2_000_000, 3, script_type="p2wpkh", limits=LIMITS, ignored_makers={"E"},
                  minimum_makers=2)
    assert why.qualifying == 1 and why.makers == 5
    assert why.message == (
        "only 1 of the 5 makers in the orderbook can take this coinjoin of 2 000 000 sat, 3 "
        "needed (plugins.joinmarket.counterparties / --counterparties): 1 refused by your fee "
        "limits (cheapest asks 40 000 sat, you allow 20 000 sat); 1 want a larger amount "
        "(smallest minimum 5 000 001 sat); 1 use another address type; 1 misbehaved earlier in "
        "this coinjoin")
    assert why.retry_can_help


def test_empty_book_may_fill_in_a_retry():
    why = explain([], 1_000_000, 2, script_type="p2wpkh", limits=LIMITS)
    assert why.retry_can_help and "orderbook is empty" in why.message
