"""jmcore.offers: offer parsing/validation and fee arithmetic against the reference vectors."""
from __future__ import annotations

import decimal
import json
import sys
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jmcore import constants as K
from jmcore.offers import (
    Offer,
    OfferError,
    calc_cj_fee,
    calc_zero_change_cj_amount,
    canonical_cjfee,
    is_within_max_limits,
    maker_change,
    parse_cancel,
    parse_offer,
    parse_offer_fields,
    parse_offers,
    split_commands,
)
from tests.vectors import VECTORS

FEES = json.loads((VECTORS / "fees.json").read_text())

FUZZ_EXAMPLES = 3000


# ---------------------------------------------------------------------------------------------
# fee vectors
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", FEES["calc_cj_fee"], ids=lambda c: f"{c['cjfee']}x{c['cj_amount']}")
def test_calc_cj_fee_vectors(case):
    assert calc_cj_fee(case["ordertype"], case["cjfee"], case["cj_amount"]) == case["real_cjfee"]


def test_calc_cj_fee_vectors_through_offers():
    for case in FEES["calc_cj_fee"]:
        o = parse_offer(f"!{case['ordertype']} 0 27300 {10**9} 0 {case['cjfee']}")
        assert o.real_cjfee(case["cj_amount"]) == case["real_cjfee"]


def test_sweep_vector():
    s = FEES["sweep_example"]
    cj, total_fee = calc_zero_change_cj_amount(s["offers"], s["total_input_value"],
                                               s["total_txfee_estimate"])
    assert (cj, total_fee) == (s["result_cj_amount"], s["result_total_cjfee"])
    offers = [Offer.from_dict(o) for o in s["offers"]]
    assert calc_zero_change_cj_amount(offers, s["total_input_value"],
                                      s["total_txfee_estimate"]) == (cj, total_fee)
    # the sweep leaves exactly zero (or rounding) change
    my_txfee = max(s["total_txfee_estimate"] - sum(o.txfee for o in offers), 0)
    fees = sum(o.real_cjfee(cj) for o in offers)
    assert abs(s["total_input_value"] - cj - fees - my_txfee) <= len(offers)


def test_rounding_is_half_even_and_context_independent():
    assert calc_cj_fee("sw0reloffer", "0.000025", 100000) == 2    # 2.5 -> 2
    assert calc_cj_fee("sw0reloffer", "0.000035", 100000) == 4    # 3.5 -> 4
    assert calc_cj_fee("sw0reloffer", "0.00001", 150000) == 2     # 1.5 -> 2
    assert calc_cj_fee("sw0reloffer", "-0.000025", 100000) == -2
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        ctx.rounding = decimal.ROUND_UP
        assert calc_cj_fee("sw0reloffer", "0.0003", 123456789) == 37037
        assert calc_cj_fee("sw0reloffer", "0.000025", 100000) == 2


@settings(max_examples=500, deadline=None)
@given(num=st.integers(min_value=-10**8, max_value=10**8), scale=st.integers(min_value=0, max_value=12),
       amount=st.integers(min_value=0, max_value=K.MAX_SATOSHIS))
def test_rel_fee_matches_reference_formula(num, scale, amount):
    """Reference: int((Decimal(cjfee) * Decimal(amount)).quantize(Decimal(1))) in the default
    context -- recomputed here independently with a fresh default context."""
    cjfee = str(Decimal(num).scaleb(-scale - 8))
    if abs(Decimal(cjfee)) > 1:
        return
    with decimal.localcontext(decimal.Context()):
        expected = int((Decimal(cjfee) * Decimal(amount)).quantize(Decimal(1)))
    assert calc_cj_fee("sw0reloffer", cjfee, amount) == expected
    assert calc_cj_fee("reloffer", cjfee, amount) == expected


def test_abs_fee_and_errors():
    assert calc_cj_fee("sw0absoffer", "250", 10) == 250
    assert calc_cj_fee("swabsoffer", 250, 10) == 250
    assert calc_cj_fee("absoffer", Decimal(7), 10) == 7
    assert calc_cj_fee("sw0absoffer", "-3", 10) == -3
    for bad in [("sw0absoffer", "2.5", 10), ("sw0absoffer", "abc", 10), ("sw0absoffer", True, 10),
                ("sw0reloffer", 0.0001, 10), ("sw0reloffer", "nan", 10), ("sw0reloffer", "1e5", 10),
                ("sw0reloffer", "0.1", -1), ("sw0reloffer", "0.1", True), ("foooffer", "1", 1),
                ("sw0reloffer", "Infinity", 1)]:
        with pytest.raises(OfferError):
            calc_cj_fee(*bad)


def test_limits_and_change():
    # rejected only when above BOTH limits
    assert is_within_max_limits(5000, 1_000_000, 0.001, 10000)       # below abs
    assert is_within_max_limits(5000, 10_000_000, 0.001, 100)        # below rel (10000)
    assert not is_within_max_limits(5000, 1_000_000, 0.001, 100)     # above both
    assert is_within_max_limits(1000, 1_000_000, 0.001, 100)         # equal to rel limit
    assert maker_change(10_000_000, 5_000_000, 300, 100) == 4_999_800


# ---------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ordertype,cjfee,script", [
    ("sw0reloffer", "0.00002", "p2wpkh"), ("sw0absoffer", "500", "p2wpkh"),
    ("swreloffer", "0.0003", "p2sh-p2wpkh"), ("swabsoffer", "1000", "p2sh-p2wpkh"),
    ("reloffer", "0.001", "p2pkh"), ("absoffer", "0", "p2pkh"),
])
def test_parse_each_offer_type(ordertype, cjfee, script):
    line = f"!{ordertype} 3 100000 200000000 150 {cjfee}"
    o = parse_offer(line, "J5maker")
    assert (o.ordertype, o.oid, o.minsize, o.maxsize, o.txfee, o.cjfee, o.counterparty) == \
        (ordertype, 3, 100000, 200000000, 150, cjfee, "J5maker")
    assert o.script_type == script
    assert o.is_relative == ordertype.endswith("reloffer") != o.is_absolute
    assert o.to_message() == line
    assert parse_offer(line[1:], "J5maker") == o
    assert Offer.from_dict(o.to_dict()) == o
    assert parse_offer_fields(ordertype, line.split(" ")[1:], "J5maker") == o
    assert isinstance(o.cjfee_value, Decimal if o.is_relative else int)


def test_reference_orderbook_semantics():
    # dusty minsize is lifted to 27300, then minsize <= maxsize must hold
    o = parse_offer("!sw0reloffer 0 100 50000 0 0.00002")
    assert o.minsize == K.DUST_THRESHOLD == 27300
    with pytest.raises(OfferError):
        parse_offer("!sw0reloffer 0 100 20000 0 0.00002")
    assert parse_offer("!sw0reloffer 0 100 20000 0 0.00002", lift_dusty_minsize=False).minsize == 100
    # relative fees are stored canonically like the reference: str(Decimal(cjfee))
    assert parse_offer("!sw0reloffer 0 27300 50000 0 2e-05").cjfee == "0.00002"
    assert parse_offer("!sw0reloffer 0 27300 50000 0 .5").cjfee == "0.5"
    assert parse_offer("!sw0reloffer 0 27300 50000 0 0.000020").cjfee == "0.000020"
    # boundaries
    assert parse_offer(f"!sw0absoffer {sys.maxsize} 27300 {K.MAX_SATOSHIS} 0 1").oid == sys.maxsize
    o = parse_offer("!sw0absoffer 0 27300 27300 0 -5")
    assert o.real_cjfee(27300) == -5 and o.net_fee(27300) == -5
    # amount ranges: taker strict, maker inclusive
    o = parse_offer("!sw0reloffer 0 30000 40000 10 0.001")
    assert not o.taker_amount_ok(30000) and o.taker_amount_ok(30001) and not o.taker_amount_ok(40000)
    assert o.maker_amount_ok(30000) and o.maker_amount_ok(40000) and not o.maker_amount_ok(40001)
    assert o.net_fee(35000) == 35 - 10


@pytest.mark.parametrize("line", [
    "", "!", "!sw0reloffer", "!sw0reloffer 0 27300 50000 0",           # too few fields
    "!sw0reloffer 0 27300 50000 0 0.1 extra",                          # too many
    "!sw1reloffer 0 27300 50000 0 0.1", "!SW0RELOFFER 0 27300 50000 0 0.1",
    "!sw0reloffer -1 27300 50000 0 0.1", f"!sw0reloffer {sys.maxsize + 1} 27300 50000 0 0.1",
    "!sw0reloffer 0 -27300 50000 0 0.1", f"!sw0reloffer 0 27300 {K.MAX_SATOSHIS + 1} 0 0.1",
    "!sw0reloffer 0 27300 50000 -1 0.1", f"!sw0reloffer 0 27300 50000 {K.MAX_SATOSHIS + 1} 0.1",
    "!sw0reloffer 0 60000 50000 0 0.1",                                # minsize > maxsize
    "!sw0reloffer 0 27300 50000 0 nan", "!sw0reloffer 0 27300 50000 0 Infinity",
    "!sw0reloffer 0 27300 50000 0 1.5", "!sw0reloffer 0 27300 50000 0 0x10",
    "!sw0reloffer 0 27300 50000 0 1e9999999", "!sw0reloffer 0 27300 50000 0 ",
    "!sw0reloffer 0 27300 50000 0 0." + "0" * 50 + "1",
    "!sw0absoffer 0 27300 50000 0 1.5", "!sw0absoffer 0 27300 50000 0 1e3",
    f"!sw0absoffer 0 27300 50000 0 {K.MAX_SATOSHIS + 1}",
    "!sw0reloffer +1 27300 50000 0 0.1", "!sw0reloffer  0 27300 50000 0 0.1",
    "!sw0reloffer 0 27_300 50000 0 0.1", "!sw0reloffer ٣ 27300 50000 0 0.1",
    "!sw0reloffer 0 27300.0 50000 0 0.1", "!sw0reloffer 0\t27300 50000 0 0.1",
    "!cancel 0",
])
def test_malformed_offers_rejected(line):
    with pytest.raises(OfferError) as ei:
        parse_offer(line)
    assert isinstance(ei.value, ValueError)


def test_extra_fields_only_when_allowed():
    line = "!sw0reloffer 0 27300 50000 0 0.1 ~"
    with pytest.raises(OfferError):
        parse_offer(line)
    assert parse_offer(line, allow_extra_fields=True).cjfee == "0.1"


def test_multi_command_messages():
    msg = ("!sw0reloffer 0 27300 100000000 0 0.00002!sw0absoffer 1 27300 100000000 0 300"
           "!sw0absoffer 2 1 2 3 x!tbond AAAA")
    assert split_commands(msg)[-1] == "tbond AAAA"
    offers, errors = parse_offers(msg, "J5x")
    assert [o.oid for o in offers] == [0, 1] and all(o.counterparty == "J5x" for o in offers)
    assert len(errors) == 1 and isinstance(errors[0], OfferError)
    assert split_commands("no bang") == [] and split_commands(b"x") == []  # type: ignore[arg-type]
    assert parse_cancel("!cancel 7") == 7
    for bad in ["!cancel", "!cancel x", "!cancel 1 2", "!hp2 7"]:
        with pytest.raises(OfferError):
            parse_cancel(bad)


@pytest.mark.parametrize("row", [
    None, [], {}, {"ordertype": "sw0reloffer"},
    {"counterparty": "a", "oid": "0", "ordertype": "sw0reloffer", "minsize": 27300,
     "maxsize": 1, "txfee": 0, "cjfee": "0.1"},
    {"counterparty": 5, "oid": 0, "ordertype": "sw0reloffer", "minsize": 27300,
     "maxsize": 50000, "txfee": 0, "cjfee": "0.1"},
    {"counterparty": "a", "oid": True, "ordertype": "sw0reloffer", "minsize": 27300,
     "maxsize": 50000, "txfee": 0, "cjfee": "0.1"},
    {"counterparty": "a", "oid": 0, "ordertype": "sw0reloffer", "minsize": 27300.0,
     "maxsize": 50000, "txfee": 0, "cjfee": "0.1"},
    {"counterparty": "a", "oid": 0, "ordertype": "sw0reloffer", "minsize": 27300,
     "maxsize": 50000, "txfee": 0, "cjfee": 0.1},
    {"counterparty": "a", "oid": 0, "ordertype": ["x"], "minsize": 27300,
     "maxsize": 50000, "txfee": 0, "cjfee": "0.1"},
])
def test_bad_orderbook_rows_rejected(row):
    with pytest.raises(OfferError):
        Offer.from_dict(row)  # type: ignore[arg-type]


def test_offer_constructor_enforces_invariants():
    Offer("sw0reloffer", 0, 27300, 50000, 0, "0.1")
    for args in [("sw0reloffer", 0, 27300, 50000, 0, "0.10000e0"),   # not canonical
                 ("sw0reloffer", -1, 27300, 50000, 0, "0.1"),
                 ("sw0reloffer", 0, 60000, 50000, 0, "0.1"),
                 ("sw0absoffer", 0, 27300, 50000, 0, "0.1"),
                 ("bogus", 0, 27300, 50000, 0, "1")]:
        with pytest.raises(OfferError):
            Offer(*args)
    assert canonical_cjfee("sw0reloffer", "1E-7") == "1E-7"  # str(Decimal) keeps exponent form


# ---------------------------------------------------------------------------------------------
# fuzzing
# ---------------------------------------------------------------------------------------------

_TOKENS = st.sampled_from(["!", " ", "0", "1", "9", "-", "+", ".", "e", "E", "sw0reloffer",
                           "sw0absoffer", "swreloffer", "absoffer", "27300", "99999999999999999999",
                           "0.00002", "nan", "inf", "~", "\t", "٣", "_", "x", "!tbond "])


def test_fuzz_offer_parser_only_raises_offer_error():
    ran = 0

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None)
    @given(text=st.one_of(st.text(max_size=120), st.lists(_TOKENS, max_size=16).map("".join)),
           extra=st.booleans(), lift=st.booleans())
    def fuzz(text, extra, lift):
        nonlocal ran
        ran += 1
        try:
            o = parse_offer(text, allow_extra_fields=extra, lift_dusty_minsize=lift)
        except OfferError:
            pass
        else:
            # whatever is accepted satisfies the invariants and round-trips
            assert o.ordertype in K.OFFER_TYPES
            assert 0 <= o.oid <= sys.maxsize
            assert 0 <= o.minsize <= o.maxsize <= K.MAX_SATOSHIS
            assert 0 <= o.txfee <= K.MAX_SATOSHIS
            if lift:
                assert o.minsize >= K.DUST_THRESHOLD
                assert parse_offer(o.to_message()) == o
            for amount in (0, o.minsize, o.maxsize):
                fee = o.real_cjfee(amount)
                assert isinstance(fee, int) and abs(fee) <= K.MAX_SATOSHIS
        offers, errors = parse_offers(text, allow_extra_fields=extra)
        assert all(isinstance(e, OfferError) for e in errors)

    fuzz()
    print(f"hypothesis: offer parser fuzz ran {ran} cases (max_examples={FUZZ_EXAMPLES})")
    assert ran >= FUZZ_EXAMPLES


@settings(max_examples=1000, deadline=None)
@given(oid=st.integers(0, sys.maxsize), a=st.integers(0, K.MAX_SATOSHIS),
       b=st.integers(0, K.MAX_SATOSHIS), txfee=st.integers(0, K.MAX_SATOSHIS),
       rel=st.decimals(min_value=-1, max_value=1, allow_nan=False, allow_infinity=False, places=8),
       absfee=st.integers(-K.MAX_SATOSHIS, K.MAX_SATOSHIS), rel_type=st.booleans())
def test_valid_offers_roundtrip(oid, a, b, txfee, rel, absfee, rel_type):
    lo, hi = sorted((max(a, K.DUST_THRESHOLD), max(b, K.DUST_THRESHOLD)))
    ordertype = "sw0reloffer" if rel_type else "sw0absoffer"
    cjfee = str(rel) if rel_type else str(absfee)
    o = parse_offer(f"!{ordertype} {oid} {lo} {hi} {txfee} {cjfee}", "J5n")
    assert (o.oid, o.minsize, o.maxsize, o.txfee) == (oid, lo, hi, txfee)
    assert parse_offer(o.to_message(), "J5n") == o == Offer.from_dict(o.to_dict())
    assert o.cjfee_value == (Decimal(cjfee) if rel_type else absfee)
