"""Issue 14.5: ``setconfig plugins.joinmarket.<key> VALUE`` stores numbers as users type them.
The end-to-end checks (offline and through a daemon) are tests/cli/test_cli_settings.py; these
pin the per-setting rules against the declared ConfigVars, so a new setting cannot miss them."""
from __future__ import annotations

from decimal import Decimal

import pytest
from electrum.simple_config import SimpleConfig

from electrum_joinmarket import setconfig, settings
from electrum_joinmarket.errors import UserError


def _var(name: str):
    return SimpleConfig.__dict__[settings.CONFIG_VARS[name]]


def test_every_int_and_bool_setting_has_its_rule():
    ints = {n for n in settings.CONFIG_VARS if _var(n)._type is int}
    bools = {n for n in settings.CONFIG_VARS if _var(n)._type is bool}
    assert ints <= set(setconfig.INT_KEYS), ints - set(setconfig.INT_KEYS)
    assert bools <= setconfig.BOOL_KEYS | {"enabled"}, bools - setconfig.BOOL_KEYS


@pytest.mark.parametrize("typed,stored", [
    (Decimal("0.004"), "0.004"), ("0.4%", "0.004"), (Decimal("0.00015"), "0.00015"),
    (1, "1")])
def test_relative_fee_limit_keeps_the_typed_decimal(typed, stored):
    assert setconfig.normalize("plugins.joinmarket.max_cj_fee_rel", typed) == stored


def test_whole_numbers_refuse_fractions_and_keep_ints():
    key = "plugins.joinmarket.max_fee_rate"
    assert setconfig.normalize(key, Decimal("50000")) == 50000
    with pytest.raises(UserError, match=r"max_fee_rate: must be a whole number, e.g. 100000"):
        setconfig.normalize(key, Decimal("2.5"))
    assert setconfig.normalize("plugins.joinmarket.max_cj_fee_abs", 20000) == 20000
    assert setconfig.normalize("plugins.joinmarket.daemon_autostart", "off") is False
    assert setconfig.normalize("other.key", Decimal("0.1")) == Decimal("0.1")   # not ours
