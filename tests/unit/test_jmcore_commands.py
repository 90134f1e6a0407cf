"""jmcore.commands must be exactly the reference AMP schema recorded in
tests/vectors/amp_commands.json (JoinMarket 0.9.12, introspected)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from jmcore import commands as c
from jmcore.errors import UnknownCommand
from tests.vectors import VECTORS

AMP_JSON = VECTORS / "amp_commands.json"


@pytest.fixture(scope="module")
def reference():
    if not AMP_JSON.exists():  # tests/vectors/ is part of the repository
        pytest.fail(f"missing reference vectors {AMP_JSON}")
    return json.loads(AMP_JSON.read_text())


def test_count_and_groups(reference):
    assert len(reference["commands"]) == reference["count_total"] == 50
    assert len(c.COMMANDS) == 50
    by_group = {}
    for s in c.COMMANDS.values():
        by_group[s.group] = by_group.get(s.group, 0) + 1
    assert by_group == reference["count_by_group"] == {"coinjoin": 26, "SNICKER": 11, "BIP78": 13}


def test_names_and_order(reference):
    ref_names = [r["name"] for r in reference["commands"]]
    assert list(c.COMMANDS) == ref_names
    assert c.COINJOIN_COMMANDS == tuple(r["name"] for r in reference["commands"]
                                        if r["group"] == "coinjoin")
    assert c.SNICKER_COMMANDS == tuple(r["name"] for r in reference["commands"]
                                       if r["group"] == "SNICKER")
    assert c.BIP78_COMMANDS == tuple(r["name"] for r in reference["commands"]
                                     if r["group"] == "BIP78")


@pytest.mark.parametrize("index", range(50))
def test_each_command_matches_reference(reference, index):
    r = reference["commands"][index]
    s = c.spec(r["name"])
    assert s.name == r["name"] == r["wire_command_name"]
    assert s.wire_name == r["wire_command_name"].encode("ascii")
    assert [(a.name, a.type) for a in s.arguments] == [tuple(x) for x in r["arguments"]]
    assert [(a.name, a.type) for a in s.response] == [tuple(x) for x in r["response"]]
    assert dict(s.errors) == r["errors"]
    assert s.direction == r["direction"]
    assert s.group == r["group"]


def test_arg_types_are_known(reference):
    used = {a.type for s in c.COMMANDS.values() for a in s.arguments + s.response}
    ref_used = {t for r in reference["commands"] for _, t in r["arguments"] + r["response"]}
    assert used == ref_used
    assert used <= c.ARG_TYPES


def test_spec_unknown_raises_keyerror_subclass():
    with pytest.raises(UnknownCommand):
        c.spec("JMNoSuchCommand")
    with pytest.raises(KeyError):
        c.spec("jminit")  # names are case-sensitive


def test_specs_are_immutable():
    s = c.spec("JMInit")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "X"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.errors["X"] = "y"  # type: ignore[index]
    hash(s)  # usable as dict keys / in sets
    assert s.error_name("daemon is not ready") == "DaemonNotReady"
    assert s.error_name("nope") is None


def test_invalid_specs_rejected():
    with pytest.raises(ValueError):
        c.Arg("x", "Float")
    with pytest.raises(ValueError):
        c.Arg("x" * 256, "Unicode")
    with pytest.raises(ValueError):
        c.CommandSpec("X", (), (), {}, "sideways", "coinjoin")
    with pytest.raises(ValueError):
        c.CommandSpec("X", (), (), {}, "client->daemon", "lightning")


def test_commands_for_direction(reference):
    c2d = c.commands_for(c.C2D, c.COINJOIN)
    assert c2d == tuple(r["name"] for r in reference["commands"]
                        if r["direction"] == "client->daemon" and r["group"] == "coinjoin")
    assert "JMInit" in c2d and "JMOffers" not in c2d
    assert set(c.commands_for(c.C2D)) | set(c.commands_for(c.D2C)) == set(c.COMMANDS)
