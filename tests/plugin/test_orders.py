"""Offer filtering and choice (PROTOCOL §8.1–8.2): fee limits (M12, incl. an absurd txfee),
strict size range, script types, one offer per maker, the four choosers (statistics with a seeded
RNG), choose_orders' failure when too few makers qualify, and the sweep solver's re-draw loop."""
from __future__ import annotations

import math
import random
from collections import Counter
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from electrum_joinmarket.market.limits import FeeLimits
from electrum_joinmarket.market.orders import (
    BONDLESS_MAKERS_ALLOWANCE,
    CHOOSERS,
    DEFAULT_MAX_OFFER_TXFEE,
    Candidate,
    NotEnoughMakers,
    OrderChoiceError,
    allowed_offer_types,
    cheapest_order_choose,
    choose_orders,
    choose_sweep_orders,
    fee_weighted_order_choose,
    filter_offers,
    get_chooser,
    make_fidelity_bond_chooser,
    total_cj_fee,
    uniform_order_choose,
)
from jmcore.offers import Offer
from tests.vectors import load

LOOSE = FeeLimits(10**8, Decimal("0.5"))


def rel(nick, cjfee="0.0001", minsize=27_300, maxsize=10**9, txfee=0, oid=0, t="sw0reloffer"):
    return Offer(t, oid, minsize, maxsize, txfee, cjfee, nick)


def absf(nick, cjfee="1000", minsize=27_300, maxsize=10**9, txfee=0, oid=0, t="sw0absoffer"):
    return Offer(t, oid, minsize, maxsize, txfee, cjfee, nick)


def nicks(cands):
    return [c.counterparty for c in cands]


# --- script types, ignored makers, size range ----------------------------------------------------

def test_allowed_offer_types_by_wallet_script():
    assert set(allowed_offer_types("p2wpkh")) == {"sw0reloffer", "sw0absoffer"}
    assert set(allowed_offer_types("p2sh-p2wpkh")) == {"swreloffer", "swabsoffer"}
    for bad in ("p2pkh", "p2tr", "p2wsh", ""):
        with pytest.raises(ValueError):
            allowed_offer_types(bad)


def test_filter_keeps_only_our_script_type():
    offers = [rel("A"), rel("B", t="swreloffer"), absf("C", t="absoffer"), absf("D", t="swabsoffer")]
    assert nicks(filter_offers(offers, 1_000_000, script_type="p2wpkh", limits=LOOSE)) == ["A"]
    assert sorted(nicks(filter_offers(offers, 1_000_000, script_type="p2sh-p2wpkh",
                                      limits=LOOSE))) == ["B", "D"]


def test_filter_drops_ignored_makers_and_offers_without_counterparty():
    offers = [rel("A"), rel("B"), rel(None)]
    assert nicks(filter_offers(offers, 1_000_000, script_type="p2wpkh", limits=LOOSE,
                               ignored_makers={"B"})) == ["A"]


def test_size_range_is_strict():
    """minsize < amount < maxsize: the range ends themselves are refused (Ref taker)."""
    o = rel("A", minsize=100_000, maxsize=200_000)
    f = lambda amt: nicks(filter_offers([o], amt, script_type="p2wpkh", limits=LOOSE))
    assert f(100_000) == [] and f(200_000) == []
    assert f(100_001) == ["A"] and f(199_999) == ["A"]
    assert f(99_999) == [] and f(200_001) == []


def test_cheapest_offer_per_maker_is_kept():
    offers = [rel("A", "0.001", oid=0), absf("A", "50", oid=1), rel("B", "0.0002")]
    cands = filter_offers(offers, 1_000_000, script_type="p2wpkh", limits=LOOSE)
    assert [(c.counterparty, c.offer.oid, c.fee) for c in cands] == [("A", 1, 50), ("B", 0, 200)]


def test_ranking_fee_is_real_cjfee_minus_txfee():
    cands = filter_offers([rel("A", "0.001", txfee=300)], 1_000_000, script_type="p2wpkh",
                          limits=LOOSE)
    assert cands[0].fee == 1000 - 300


# --- fee limits (M12) ------------------------------------------------------------------------------

def test_m12_fee_rejected_only_when_above_both_limits():
    amount = 1_000_000
    limits = FeeLimits(500, Decimal("0.001"))            # abs 500 sats, rel 1000 sats at 1M
    f = lambda fee: nicks(filter_offers([absf("A", str(fee))], amount, script_type="p2wpkh",
                                        limits=limits))
    assert f(500) == ["A"]          # at abs limit
    assert f(900) == ["A"]          # above abs, below rel -> kept
    assert f(1000) == ["A"]         # exactly rel
    assert f(1001) == []            # above both -> refused
    limits2 = FeeLimits(5000, Decimal("0.001"))
    assert nicks(filter_offers([absf("A", "4000")], amount, script_type="p2wpkh",
                               limits=limits2)) == ["A"]   # above rel, below abs -> kept
    assert nicks(filter_offers([absf("A", "5001")], amount, script_type="p2wpkh",
                               limits=limits2)) == []


def test_m12_relative_limit_scales_with_cj_amount():
    limits = FeeLimits(0, Decimal("0.002"))
    offers = [rel("A", "0.0025")]
    assert nicks(filter_offers(offers, 10_000_000, script_type="p2wpkh", limits=limits)) == []
    assert nicks(filter_offers([rel("A", "0.002")], 10_000_000, script_type="p2wpkh",
                               limits=limits)) == ["A"]


def test_m12_choose_orders_refuses_when_limits_leave_too_few_makers():
    offers = [absf("A", "100"), absf("B", "200"), absf("C", "90000")]
    limits = FeeLimits(1000, Decimal("0.0001"))
    with pytest.raises(NotEnoughMakers) as err:
        choose_orders(offers, 1_000_000, 3, cheapest_order_choose, limits=limits,
                      rng=random.Random(1))
    assert err.value.needed == 3 and err.value.available == 2
    assert "not enough liquidity" in str(err.value)


def test_m12_absurd_txfee_offer_is_refused_not_chosen_as_cheapest():
    """A huge txfee makes the ranking fee hugely negative; without the cap the 'cheapest' and the
    fee-weighted choosers would always take it."""
    amount = 5_000_000
    honest = [rel("H1", "0.0001"), rel("H2", "0.0002"), rel("H3", "0.0003")]
    absurd = rel("EVIL", "0", txfee=4_000_000)             # below amount, above the cap
    cands = filter_offers(honest + [absurd], amount, script_type="p2wpkh", limits=LOOSE)
    assert "EVIL" not in nicks(cands)
    chosen = choose_orders(honest + [absurd], amount, 1, cheapest_order_choose, limits=LOOSE,
                           rng=random.Random(0))
    assert nicks(chosen) == ["H1"]
    # the cap is what protects: lifting it makes the absurd offer the 'cheapest'
    lifted = choose_orders(honest + [absurd], amount, 1, cheapest_order_choose, limits=LOOSE,
                           rng=random.Random(0), max_offer_txfee=10**15)
    assert nicks(lifted) == ["EVIL"] and lifted[0].fee == -4_000_000
    # a txfee at or above the amount is refused whatever the cap
    assert filter_offers([rel("X", txfee=amount)], amount, script_type="p2wpkh", limits=LOOSE,
                         max_offer_txfee=10**15) == []
    assert DEFAULT_MAX_OFFER_TXFEE == 100_000
    assert nicks(filter_offers([rel("Y", txfee=100_000)], amount, script_type="p2wpkh",
                               limits=LOOSE)) == ["Y"]
    assert filter_offers([rel("Y", txfee=100_001)], amount, script_type="p2wpkh", limits=LOOSE) == []


def test_fee_limits_validation():
    assert FeeLimits(0, 0.004).max_rel == Decimal("0.004")     # float taken by its repr
    assert FeeLimits(1, "0.001").max_rel == Decimal("0.001")
    for bad_abs in (-1, 1.5, True, "5"):
        with pytest.raises(ValueError):
            FeeLimits(bad_abs, Decimal("0.001"))
    for bad_rel in (Decimal("-0.1"), Decimal("1.5"), Decimal("NaN"), "x", float("inf"), None):
        with pytest.raises(ValueError):
            FeeLimits(100, bad_rel)


# --- choosers --------------------------------------------------------------------------------------

def _cands(fees, bonds=None):
    bonds = bonds or [0.0] * len(fees)
    return [Candidate(absf(f"M{i}", str(max(f, 0))), f, b)
            for i, (f, b) in enumerate(zip(fees, bonds, strict=True))]


def _freqs(chooser, cands, n, draws, seed):
    rng = random.Random(seed)
    c = Counter(chooser(cands, n, rng).counterparty for _ in range(draws))
    return {k: v / draws for k, v in c.items()}


def _close(observed, expected, draws, z=5.0):
    """|obs - p| within z standard deviations of a binomial proportion."""
    for k, p in expected.items():
        sd = math.sqrt(p * (1 - p) / draws)
        assert abs(observed.get(k, 0.0) - p) <= z * sd + 1e-12, (k, observed.get(k), p)


def test_cheapest_chooser_always_first():
    cands = _cands([10, 20, 30])
    assert {cheapest_order_choose(cands, 1, random.Random(s)).counterparty for s in range(50)} == {"M0"}


def test_uniform_chooser_statistics():
    cands = _cands([10, 20, 30, 40, 50])
    draws = 40_000
    _close(_freqs(uniform_order_choose, cands, 1, draws, 7), {f"M{i}": 0.2 for i in range(5)}, draws)


def test_fee_weighted_chooser_statistics():
    fees = [0, 100, 200, 300, 400, 500]
    cands = _cands(fees)
    n = 1                                     # M = 3n = 3 -> phi = fee[3] - fmin = 300
    w = [math.exp(-f / 300) for f in fees]
    expected = {f"M{i}": x / sum(w) for i, x in enumerate(w)}
    draws = 40_000
    _close(_freqs(fee_weighted_order_choose, cands, n, draws, 11), expected, draws)
    # with more makers than 3n the scale comes from the last fee instead
    n = 2                                     # M = 6 >= len -> phi = fee[-1] - fmin = 500
    w = [math.exp(-f / 500) for f in fees]
    _close(_freqs(fee_weighted_order_choose, cands, n, draws, 12),
           {f"M{i}": x / sum(w) for i, x in enumerate(w)}, draws)


def test_fee_weighted_chooser_uniform_when_all_fees_equal():
    cands = _cands([70, 70, 70, 70])
    draws = 20_000
    _close(_freqs(fee_weighted_order_choose, cands, 1, draws, 3), {f"M{i}": 0.25 for i in range(4)}, draws)


def test_fidelity_bond_chooser_statistics_default_allowance():
    """Per slot: with p=0.125 uniform over all, else proportional to bond value."""
    cands = _cands([10, 20, 30, 40], bonds=[1.0, 3.0, 0.0, 0.0])
    a = BONDLESS_MAKERS_ALLOWANCE
    assert a == 0.125
    expected = {"M0": a / 4 + (1 - a) * 1 / 4, "M1": a / 4 + (1 - a) * 3 / 4,
                "M2": a / 4, "M3": a / 4}
    draws = 60_000
    _close(_freqs(CHOOSERS["fidelity_bond"], cands, 1, draws, 5), expected, draws)


def test_fidelity_bond_chooser_without_bonds_is_uniform_and_allowance_zero_excludes_bondless():
    draws = 20_000
    _close(_freqs(CHOOSERS["fidelity_bond"], _cands([1, 2, 3, 4]), 1, draws, 9),
           {f"M{i}": 0.25 for i in range(4)}, draws)
    strict = make_fidelity_bond_chooser(0.0)
    f = _freqs(strict, _cands([1, 2, 3], bonds=[0.0, 2.0, 0.0]), 1, 2000, 4)
    assert f == {"M1": 1.0}
    with pytest.raises(ValueError):
        make_fidelity_bond_chooser(1.5)


def test_choosers_are_reproducible_with_a_seeded_rng_and_registered_by_name():
    offers = [rel(f"N{i}", f"0.000{i + 1}") for i in range(9)]
    bonds = {"N2": 5.0, "N7": 1.0}
    for name in CHOOSERS:
        ch = get_chooser(name)
        a = choose_orders(offers, 2_000_000, 4, ch, limits=LOOSE, bond_values=bonds, rng=random.Random(42))
        b = choose_orders(offers, 2_000_000, 4, ch, limits=LOOSE, bond_values=bonds, rng=random.Random(42))
        assert nicks(a) == nicks(b) and len(set(nicks(a))) == 4
    with pytest.raises(ValueError):
        get_chooser("nope")


def test_choose_orders_draws_n_distinct_makers_statistics():
    """n = 3 of 4 makers, uniform: each maker is left out 1/4 of the time."""
    offers = [rel("A"), absf("A", "5", oid=1), rel("B"), rel("C"), rel("D")]
    rng = random.Random(99)
    left_out = Counter()
    runs = 8000
    for _ in range(runs):
        chosen = choose_orders(offers, 1_000_000, 3, uniform_order_choose, limits=LOOSE, rng=rng)
        assert len(set(nicks(chosen))) == 3
        left_out.update({"A", "B", "C", "D"} - set(nicks(chosen)))
    _close({k: v / runs for k, v in left_out.items()}, {k: 0.25 for k in "ABCD"}, runs)


def test_choose_orders_not_enough_makers_and_bad_arguments():
    offers = [rel("A"), rel("A", oid=1), rel("B")]
    with pytest.raises(NotEnoughMakers):
        choose_orders(offers, 1_000_000, 3, limits=LOOSE, rng=random.Random(0))
    with pytest.raises(ValueError):
        choose_orders(offers, 0, 1, limits=LOOSE)
    with pytest.raises(ValueError):
        choose_orders(offers, 1_000_000, 0, limits=LOOSE)
    with pytest.raises(TypeError):
        choose_orders(offers, 1_000_000, 1)                  # fee limits are mandatory


def test_total_cj_fee():
    chosen = choose_orders([rel("A", "0.001"), absf("B", "700")], 1_000_000, 2, cheapest_order_choose,
                           limits=LOOSE, rng=random.Random(0))
    assert total_cj_fee(chosen, 1_000_000) == 1700


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ABCDEFG"), st.integers(0, 3000), st.integers(0, 2000),
                          st.integers(27_300, 3_000_000), st.integers(0, 5_000_000)),
                min_size=0, max_size=25),
       st.integers(100_000, 2_000_000), st.integers(1, 5), st.integers(0, 2**32))
def test_choose_orders_properties(rows, amount, n, seed):
    """Whatever the book: either n distinct makers, each offer within every filter, or
    NotEnoughMakers."""
    offers = [absf(nk, str(fee), minsize=lo, maxsize=lo + span, txfee=txfee, oid=i)
              for i, (nk, fee, txfee, lo, span) in enumerate(rows)]
    limits = FeeLimits(1000, Decimal("0.001"))
    try:
        chosen = choose_orders(offers, amount, n, CHOOSERS["fee_weighted"], limits=limits,
                               rng=random.Random(seed))
    except NotEnoughMakers:
        return
    assert len(chosen) == n and len(set(nicks(chosen))) == n
    for c in chosen:
        o = c.offer
        assert o.minsize < amount < o.maxsize and o.txfee < amount
        assert limits.allows(o.real_cjfee(amount) - o.txfee, amount)


# --- sweeps ----------------------------------------------------------------------------------------

def test_sweep_vector_from_fees_json():
    v = load("fees.json")["sweep_example"]
    offers = [Offer.from_dict(o) for o in v["offers"]]
    res = choose_sweep_orders(offers, v["total_input_value"], v["total_txfee_estimate"], v["n"],
                              cheapest_order_choose, limits=LOOSE, rng=random.Random(0))
    assert res.cj_amount == v["result_cj_amount"] == 49_990_801
    assert res.total_cjfee == v["result_total_cjfee"] == 6298
    assert sorted(nicks(res.orders)) == ["A", "B", "C"]


def test_sweep_redraws_when_solved_amount_leaves_an_offer_range():
    """Maker X passes the sweep pre-filter (minsize < total input) but its minsize is above the
    solved zero-change amount: it is dropped and another maker is drawn instead."""
    total, txfee = 10_000_000, 3000
    x = absf("X", "10", minsize=9_999_000, maxsize=10**9)
    others = [rel(f"O{i}", "0.0002") for i in range(4)]
    drawn = []

    def recording(cands, n, rng):
        pick = uniform_order_choose(cands, n, rng)
        drawn.append(pick.counterparty)
        return pick

    x_redrawn = 0
    for seed in range(40):
        drawn.clear()
        res = choose_sweep_orders([x] + others, total, txfee, 3, recording,
                                  limits=LOOSE, rng=random.Random(seed))
        assert "X" not in nicks(res.orders) and len(set(nicks(res.orders))) == 3
        assert all(o.offer.minsize <= res.cj_amount <= o.offer.maxsize for o in res.orders)
        # zero change: inputs = cj + fees + my txfee (up to rounding)
        assert abs(total - res.cj_amount - res.total_cjfee - txfee) <= 1
        if "X" in drawn:
            assert len(drawn) == 4            # X was drawn, thrown out, one more maker drawn
            x_redrawn += 1
        else:
            assert len(drawn) == 3
    assert 0 < x_redrawn < 40


def test_sweep_runs_out_of_makers_cleanly():
    total, txfee = 10_000_000, 3000
    bad = [absf(f"X{i}", "10", minsize=9_999_000 + i) for i in range(3)]
    good = [rel("G0", "0.0002")]
    with pytest.raises(NotEnoughMakers):
        choose_sweep_orders(bad + good, total, txfee, 2, uniform_order_choose, limits=LOOSE,
                            rng=random.Random(1))


def test_m12_sweep_relative_limit_applies_to_total_input():
    """For sweeps the fee (real cjfee at the total input, as Ref) is compared with
    max_rel × total input."""
    total, txfee = 20_000_000, 2000
    limits = FeeLimits(0, Decimal("0.0003"))                # 6000 sats at 20M
    ok = [absf("A", "6000"), rel("B", "0.0003"), rel("C", "0.0001")]
    too_much = [absf("D", "6001"), rel("E", "0.00031")]
    res = choose_sweep_orders(ok + too_much, total, txfee, 3, uniform_order_choose, limits=limits,
                              rng=random.Random(3))
    assert sorted(nicks(res.orders)) == ["A", "B", "C"]
    with pytest.raises(NotEnoughMakers):
        choose_sweep_orders(ok + too_much, total, txfee, 4, uniform_order_choose, limits=limits,
                            rng=random.Random(3))


def test_sweep_bad_arguments():
    with pytest.raises(ValueError):
        choose_sweep_orders([rel("A")], 0, 100, 1, limits=LOOSE)
    with pytest.raises(ValueError):
        choose_sweep_orders([rel("A")], 100_000, -1, 1, limits=LOOSE)
    with pytest.raises(OrderChoiceError):
        choose_sweep_orders([rel("A", minsize=27_300)], 30_000, 29_999, 1, cheapest_order_choose,
                            limits=LOOSE, rng=random.Random(0))


def test_orderbook_rows_go_through_the_one_offer_validator():
    """The taker and the tab read the daemon's JMOffers rows with one function over jmcore's
    Offer validation: bad rows are dropped, never raised (D1)."""
    from electrum_joinmarket.market.orders import offers_from_rows
    good = {"counterparty": "J5good", "oid": 0, "ordertype": "sw0reloffer", "minsize": 27300,
            "maxsize": 10**8, "txfee": 0, "cjfee": "0.0002"}
    bad = [dict(good, ordertype="sw9offer"), dict(good, minsize=10**9), dict(good, cjfee="x"),
           "not a row", None, dict(good, oid=-1)]
    offers = offers_from_rows([good] + bad)
    assert [(o.counterparty, o.ordertype, o.cjfee) for o in offers] == [
        ("J5good", "sw0reloffer", "0.0002")]
    assert offers_from_rows("not a list") == [] and offers_from_rows(None) == []
