"""The user's fee limits: one type, one parser, no default (ARCHITECTURE invariant 1, M12).

Every entry point (settings, command arguments, the form, the settings dialog) parses through
``market.limits``; these tests pin what it accepts and refuses, that it never rounds through a
float, that an unset limit is refused everywhere, and that there is exactly one FeeLimits."""
from __future__ import annotations

import ast
import dataclasses
import os
from decimal import Decimal

import pytest

from electrum_joinmarket.market.limits import (
    FeeLimitError,
    FeeLimits,
    FeeLimitsUnset,
    format_max_rel,
    parse_fee_limits,
    parse_max_abs,
    parse_max_rel,
)

PACKAGE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("typed, expected", [
    ("0.004", "0.004"), ("0.4%", "0.004"), ("0.4 %", "0.004"), (" 0.4% ", "0.004"),
    ("1e-3", "0.001"), ("0", "0"), ("100%", "1"), ("0.00002%", "0.0000002"),
    (0.004, "0.004"), (Decimal("0.001"), "0.001"), (1, "1"), (0, "0"),
])
def test_relative_limit_accepts_what_users_type(typed, expected):
    assert parse_max_rel(typed) == Decimal(expected)
    assert format_max_rel(parse_max_rel(typed)) == expected


def test_relative_limit_has_no_float_rounding():
    # 0.1 % of the amount is exactly 1/1000, not float(0.001) = 0.001000000000000000020816...
    assert parse_max_rel("0.1%") == Decimal("0.001") != Decimal(0.001)
    assert parse_max_rel(0.001) == Decimal("0.001")           # a float is taken as typed (repr)
    assert FeeLimits(0, "0.1%").allows(1000, 1_000_000)      # exactly at the relative limit
    assert not FeeLimits(0, "0.1%").allows(1001, 1_000_000)


@pytest.mark.parametrize("bad", ["x", "1.5", "-0.1", "200%", "NaN", "inf", "", "%", "0,4%",
                                 True, None, [0.1], "1" * 41])
def test_relative_limit_refuses_with_what_to_type(bad):
    with pytest.raises(FeeLimitError) as e:
        parse_max_rel(bad)
    assert "relative fee limit" in str(e.value) and "e.g. 0.004" in str(e.value)


@pytest.mark.parametrize("typed, expected", [
    (20000, 20000), ("20000", 20000), ("20 000", 20000), ("20,000 sat", 20000),
    ("20_000sats", 20000), (0, 0), (Decimal("500"), 500),
])
def test_absolute_limit_accepts_whole_sats(typed, expected):
    assert parse_max_abs(typed) == expected


@pytest.mark.parametrize("bad", ["x", "1.5", "-1", "", True, 1.5, -1, 21 * 10**14 + 1,
                                 Decimal("1.5"), None])
def test_absolute_limit_refuses_with_what_to_type(bad):
    with pytest.raises(FeeLimitError) as e:
        parse_max_abs(bad)
    assert "whole number of sats" in str(e.value)


@pytest.mark.parametrize("abs_, rel", [(None, "0.002"), (20000, None), ("", "0.002"),
                                       (20000, "  "), (None, None)])
def test_an_unset_limit_is_refused_not_defaulted(abs_, rel):
    with pytest.raises(FeeLimitsUnset) as e:
        parse_fee_limits(abs_, rel)
    assert "max_cj_fee_rel" in str(e.value) and "max_cj_fee_abs" in str(e.value)


def test_fee_limit_errors_are_electrum_user_facing():
    from electrum.util import UserFacingException

    from electrum_joinmarket.errors import Failure, JoinMarketError
    assert issubclass(FeeLimitsUnset, UserFacingException)
    assert issubclass(FeeLimitError, UserFacingException) and issubclass(FeeLimitError, ValueError)
    assert issubclass(FeeLimitsUnset, JoinMarketError)
    assert FeeLimitsUnset().failure == Failure.FEE_LIMITS


def test_taker_config_carries_no_default_fee_limits():
    from electrum_joinmarket.taker.taker import TakerConfig
    field = {f.name: f for f in dataclasses.fields(TakerConfig)}["limits"]
    assert field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    with pytest.raises(TypeError):
        TakerConfig(amount=100_000, destination="x")               # type: ignore[call-arg]
    cfg = TakerConfig(amount=100_000, destination="x", limits=None)  # type: ignore[arg-type]
    with pytest.raises(FeeLimitsUnset):
        cfg.check()


def test_parsed_limits_round_trip_through_the_settings():
    limits = parse_fee_limits("20 000 sat", "0.4%")
    assert limits == FeeLimits(20000, Decimal("0.004"))
    assert parse_fee_limits(**dict(zip(("max_abs", "max_rel"),
                                       limits.as_settings().values(), strict=True))) == limits
    assert limits.describe() == "20 000 sat or 0.4 % per maker"


def test_exactly_one_fee_limits_class_in_the_plugin():
    classes = []
    for root, _dirs, files in os.walk(os.path.join(PACKAGE, "electrum_joinmarket")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as f:
                    tree = ast.parse(f.read())
                classes += [path for node in ast.walk(tree)
                            if isinstance(node, ast.ClassDef) and node.name == "FeeLimits"]
    assert [os.path.relpath(p, PACKAGE) for p in classes] == [
        os.path.join("electrum_joinmarket", "market", "limits.py")]
