"""Schedule model, storage round trip and the tumbler generator (no network)."""
from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal

import pytest

from electrum_joinmarket.schedule.engine import round_sigfig
from electrum_joinmarket.schedule.model import (
    ADDRASK,
    INTERNAL,
    NO_ROUNDING,
    Schedule,
    ScheduleError,
    Step,
    parse_amount,
)
from electrum_joinmarket.schedule.store import ScheduleStore
from electrum_joinmarket.schedule.tumbler import TumblerParams, amount_fractions, generate_tumble


def _regtest_addresses() -> list[str]:
    from electrum import constants
    from electrum.bitcoin import hash_to_segwit_addr
    constants.BitcoinRegtest.set_as_network()
    return [hash_to_segwit_addr(bytes([i]) * 20, 0) for i in (1, 2, 3)]


ADDR = _regtest_addresses()


def test_amounts_are_exact():
    assert parse_amount(0) == 0 and parse_amount("0") == 0 and parse_amount("0.0") == 0
    assert parse_amount(150_000) == 150_000 and parse_amount("150000") == 150_000
    assert parse_amount("0.25") == "0.25" and parse_amount(0.1) == "0.1"
    assert parse_amount("0.500") == "0.5"
    for bad in ("1.5", "-1", "abc", True, -3, "nan", "1.0"):
        with pytest.raises(ScheduleError):
            parse_amount(bad)


def test_step_validation_messages():
    Step(0, "0.5", 4, INTERNAL).validate(5)
    Step(4, 0, 4, ADDR[0], wait_blocks=2).validate(5)
    cases = [(Step(5, 0, 4, INTERNAL), "depth"), (Step(0, 0, 0, INTERNAL), "counterparties"),
             (Step(0, 0, 3, "nonsense"), "not an address"),
             (Step(0, 0, 3, INTERNAL, wait_blocks=-1), "wait_blocks")]
    for step, word in cases:
        with pytest.raises(ScheduleError, match=word):
            step.validate(5)
    with pytest.raises(ScheduleError, match="unknown step field"):
        Step.from_dict({"depth": 0, "amount": 0, "counterparties": 3, "destination": INTERNAL,
                        "colour": "red"})


def test_store_round_trip_is_exact_and_saves_every_time():
    storage: dict = {}
    saves = []
    store = ScheduleStore(storage, lambda: saves.append(1))
    s = Schedule(steps=[Step(0, 12_000_000, 3, INTERNAL, wait_blocks=1),
                        Step(1, "0.5", 3, INTERNAL), Step(1, 0, 2, ADDR[0])], name="t")
    s.validate(5)
    store.save(s)
    assert len(saves) == 1
    back = store.load(s.id)
    assert back.to_dict() == s.to_dict()
    assert back.steps[1].amount == "0.5" and isinstance(back.steps[0].amount, int)
    assert store.ids() == [s.id]
    with pytest.raises(ScheduleError):
        store.load("nope")


def test_round_sigfig():
    assert round_sigfig(12_345_678, 2) == 12_000_000
    assert round_sigfig(12_545_678, 3) == 12_500_000
    assert round_sigfig(987, 5) == 987
    assert round_sigfig(12_345, NO_ROUNDING) == 12_345


def test_amount_fractions_sum_to_one_and_last_above_5_percent():
    rng = random.Random(1)
    for n in range(1, 8):
        for _ in range(200):
            f = amount_fractions(n, rng)
            assert len(f) == n and abs(sum(f) - 1) < 1e-9 and f[-1] > 0.05
            assert all(x > 0 for x in f)


def test_tumble_structure_follows_the_reference_algorithm():
    rng = random.Random(7)
    p = TumblerParams()
    s = generate_tumble(p, ADDR, {0: 50_000_000}, depth_count=5, rng=rng)
    steps = s.steps
    # stage 1: depth 0 swept to depth 1
    assert (steps[0].depth, steps[0].amount, steps[0].destination) == (0, 0, INTERNAL)
    # stage 2: depths 1..4 in order; each depth's run ends with a sweep
    depths = [st.depth for st in steps[1:]]
    assert depths == sorted(depths) and set(depths) == {1, 2, 3, 4}
    for d in (1, 2, 3, 4):
        run = [st for st in steps if st.depth == d and st is not steps[0]]
        assert run[-1].amount == 0
        assert all(st.is_fraction for st in run[:-1])
    # the last depth (4) sends everything to the last address, in one sweep (Ref reverses the
    # list: earlier depths pay earlier addresses)
    last = [st for st in steps if st.depth == 4]
    assert len(last) == 1 and last[0].destination == ADDR[2] and last[0].amount == 0
    # depths 3 and 2 send their last coinjoin to the other addresses, keep ≥ 2 steps
    for d, addr in ((3, ADDR[1]), (2, ADDR[0])):
        run = [st for st in steps if st.depth == d]
        assert run[-1].destination == addr and len(run) >= 2
        assert all(st.destination == INTERNAL for st in run[:-1])
    assert all(st.destination == INTERNAL for st in steps if st.depth == 1)
    assert all(st.counterparties >= p.minmakercount for st in steps)
    assert s.params["mixdepthcount"] == 4


def test_tumble_missing_addresses_are_asked_and_filled_depths_swept_highest_first():
    s = generate_tumble(TumblerParams(addrcount=2, mixdepthcount=3), [ADDR[0]],
                        {0: 10_000_000, 2: 3_000_000}, depth_count=5, rng=random.Random(3))
    assert [(st.depth, st.amount) for st in s.steps[:2]] == [(2, 0), (0, 0)]
    dests = [st.destination for st in s.steps]
    assert dests.count(ADDR[0]) == 1 and dests.count(ADDRASK) == 1
    # stage 2 starts after the lowest filled depth: 1, 2, 3 (wrapping not needed here)
    assert {st.depth for st in s.steps[2:]} == {1, 2, 3}


def test_tumble_distributions_with_defaults():
    """Over many schedules: mean counterparties ≈ 9 (normal 9±1, floored at 4), stage-2 waits
    ≈ 60 min, stage-1 waits ≈ 180 min, a quarter of non-final amounts rounded."""
    rng = random.Random(11)
    makers, waits1, waits2, rounded, fractional = [], [], [], 0, 0
    for _ in range(400):
        s = generate_tumble(TumblerParams(), ADDR, {0: 10**8}, depth_count=5, rng=rng)
        waits1.append(s.steps[0].wait_minutes)
        for st in s.steps[1:]:
            makers.append(st.counterparties)
            waits2.append(st.wait_minutes)
            if st.is_fraction:
                fractional += 1
                rounded += st.rounding != NO_ROUNDING
    mean = sum(makers) / len(makers)
    assert 8.0 < mean < 9.0            # int() truncation of N(9, 1), as Ref
    assert 150 < sum(waits1) / len(waits1) < 210
    assert 52 < sum(waits2) / len(waits2) < 68
    assert 0.19 < rounded / fractional < 0.31
    assert Counter(makers)[3] == 0


def test_tumble_parameters_checked():
    with pytest.raises(ScheduleError, match="depths"):
        generate_tumble(TumblerParams(mixdepthcount=5), ADDR, {0: 1}, depth_count=5)
    with pytest.raises(ScheduleError, match="no confirmed coins"):
        generate_tumble(TumblerParams(), ADDR, {0: 0}, depth_count=5)
    with pytest.raises(ScheduleError, match="destination addresses"):
        generate_tumble(TumblerParams(addrcount=1), ADDR[:2], {0: 5}, depth_count=5)
    with pytest.raises(ScheduleError, match="unknown tumbler"):
        TumblerParams.from_dict({"bogus": 1})
    assert Decimal("0.000001") <= Decimal("0.000001")


def test_tumble_parameter_types_are_user_errors():
    from electrum.util import UserFacingException
    with pytest.raises(ScheduleError, match="must be numbers"):
        generate_tumble(TumblerParams.from_dict({"addrcount": "three"}), ADDR, {0: 5},
                        depth_count=5)
    assert issubclass(ScheduleError, UserFacingException)   # Electrum prints it as one line
