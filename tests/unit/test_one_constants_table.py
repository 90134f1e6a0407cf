"""One constants table (issue 10.3): every protocol constant is written once, in
``jmcore/constants.py``; the plugin and the daemon import it instead of repeating its value."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import jmcore.constants as J
from jmcore import channels

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("electrum_joinmarket", "jmdaemon", "jmcore")
WIRE_NAMES = {n for n in dir(J) if n.isupper()}


def _literal(node: ast.AST) -> bool:
    """A value written out in the source (numbers, strings, tuples/sets of them, arithmetic)."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(_literal(e) for e in node.elts)
    if isinstance(node, ast.BinOp):
        return _literal(node.left) and _literal(node.right)
    if isinstance(node, ast.UnaryOp):
        return _literal(node.operand)
    return False


def _repeated_constants() -> list[str]:
    found = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path == ROOT / "jmcore" / "constants.py":
                continue
            for node in ast.parse(path.read_text(), str(path)).body:
                targets = (node.targets if isinstance(node, ast.Assign)
                           else [node.target] if isinstance(node, ast.AnnAssign) else [])
                value = getattr(node, "value", None)
                for t in targets:
                    if (isinstance(t, ast.Name) and t.id in WIRE_NAMES and value is not None
                            and _literal(value)):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {t.id}")
    return found


def test_no_module_repeats_a_jmcore_constant():
    assert _repeated_constants() == []


def test_one_constants_module():
    """jmcore's is the only one; the daemon's own bounds are in jmdaemon/limits.py."""
    assert sorted(str(p.relative_to(ROOT)) for pkg in PACKAGES
                  for p in (ROOT / pkg).rglob("constants.py")) == ["jmcore/constants.py"]


def test_the_plugin_names_are_jmcore_values():
    from electrum_joinmarket.protocol import bonds, nick, podle
    assert nick.JM_VERSION is J.JM_VERSION and nick.NICK_MAX_ENCODED is J.NICK_MAX_ENCODED
    assert podle.COMMITMENT_TYPE_PODLE is J.COMMITMENT_TYPE_PODLE
    assert bonds.PROOF_LEN == J.FIDELITY_BOND_PROOF_LENGTH == bonds.PROOF_STRUCT.size
    assert bonds.DEFAULT_INTEREST_RATE is J.BOND_INTEREST_RATE
    assert bonds.YEAR_SECONDS == J.SECONDS_PER_YEAR
    assert channels.IRCChannelConfig("127.0.0.1", 6667).channel == J.IRC_CHANNEL_BASE


@pytest.mark.parametrize("network,wire", [
    ("mainnet", "mainnet"), (None, "mainnet"), ("bogus", "mainnet"), ("regtest", "testnet"),
    ("testnet4", "testnet"), ("TESTNET", "testnet"), ("signet", "signet")])
def test_network_for_wire(network, wire):
    assert channels.network_for_wire(network) == wire


def test_wire_network_is_the_strict_form():
    assert channels.wire_network("regtest") == "testnet"
    with pytest.raises(channels.ChannelConfigError):
        channels.wire_network("bogus")


@pytest.mark.parametrize("base,network,name", [
    ("joinmarket-pit", "mainnet", "#joinmarket-pit"),
    ("#joinmarket-pit", "regtest", "#joinmarket-pit-test"),
    ("joinmarket-pit-test", "testnet", "#joinmarket-pit-test"),
    ("joinmarket-pit", "signet", "#joinmarket-pit-sig")])
def test_irc_channel_name(base, network, name):
    assert channels.irc_channel_name(base, network) == name
