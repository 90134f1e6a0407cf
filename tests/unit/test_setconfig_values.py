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


def _readme_settings_rows() -> dict[str, tuple[str, str]]:
    """key -> (default cell, meaning cell) of README's settings table."""
    import pathlib
    import re
    text = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("### Settings (", 1)[1].split("\n### ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            keys = re.findall(r"`([a-z_]+)`", cells[0])
            defaults = [d.strip() for d in cells[1].split(",")]
            for i, k in enumerate(keys):
                rows[k] = (defaults[i] if len(defaults) == len(keys) else cells[1], cells[2])
    return rows


def test_readme_settings_table_lists_every_setting_with_its_default():
    """Issue 14.10: every ConfigVar is in README's table, with the default the code has."""
    rows = _readme_settings_rows()
    assert set(settings.CONFIG_VARS) <= set(rows), set(settings.CONFIG_VARS) - set(rows)
    for name in settings.CONFIG_VARS:
        default = _var(name)._default
        cell = rows[name][0]
        if default is None:
            assert cell, name                 # unset: what applies then (e.g. counterparties 8)
        elif isinstance(default, bool):
            assert cell == str(default).lower(), (name, cell)
        else:
            assert cell.strip("`") == str(default), (name, cell, default)
        assert rows[name][1], name
