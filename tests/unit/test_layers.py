"""The package rule (docs/architecture.md) holds on this tree, and the checker that enforces it
(scripts/check_layers.py) reports each kind of violation: planted in a throw-away tree, every one
is named with its file and line, and the legal imports next to them are not."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "scripts" / "check_layers.py"


def run_checker(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECKER), str(root)], capture_output=True, text=True,
                          timeout=120)


def test_this_tree_keeps_the_package_rule():
    r = run_checker(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 violation(s)" in r.stdout


def write(root: Path, rel: str, body: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body).lstrip("\n"), encoding="utf-8")


def test_checker_reports_each_violation(tmp_path):
    for pkg in ("jmcore", "jmdaemon", "electrum_joinmarket", "electrum_joinmarket/link"):
        write(tmp_path, f"{pkg}/__init__.py", "")
    write(tmp_path, "jmcore/bad.py", """
        from __future__ import annotations
        import json
        from . import offers
        import twisted
        import requests
        """)
    write(tmp_path, "jmdaemon/bad.py", """
        import twisted.internet
        import nacl.public
        from jmcore import commands
        from electrum_ecc import ECPrivkey
        import importlib

        def late():
            import coincurve
            return importlib.import_module("bitcointx")
        """)
    write(tmp_path, "electrum_joinmarket/bad.py", """
        from typing import TYPE_CHECKING
        import electrum_ecc
        from electrum.transaction import PartialTransaction
        from twisted.internet import reactor
        if TYPE_CHECKING:
            from jmdaemon.server import JMDaemonServerFactory

        def lazy_but_not_the_launcher():
            import jmdaemon
        """)
    write(tmp_path, "electrum_joinmarket/link/daemon.py", """
        import nacl

        def start():
            from twisted.internet import reactor
            from jmdaemon import cli
        """)
    write(tmp_path, "electrum_joinmarket/deep.py", "from ... import anything\n")
    write(tmp_path, "scripts/tool.py", "from tests.vectors import load\n")
    write(tmp_path, "tests/test_x.py", "from tests.vectors import load\n")
    write(tmp_path, "tests/sub/test_y.py", "from .conftest import helper\nfrom tests import conftest\n")

    r = run_checker(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    found = {line.split(": ", 1)[0] for line in r.stdout.splitlines() if not line.startswith("layer check")}
    assert found == {
        "jmcore/bad.py:4",                        # twisted
        "jmcore/bad.py:5",                        # not stdlib
        "jmdaemon/bad.py:4",                      # electrum_ecc: a key library
        "jmdaemon/bad.py:8",                      # coincurve, even lazily
        "jmdaemon/bad.py:9",                      # importlib.import_module("bitcointx")
        "electrum_joinmarket/bad.py:4",           # twisted at module level
        "electrum_joinmarket/bad.py:6",           # jmdaemon, even for type checking only
        "electrum_joinmarket/bad.py:9",           # lazy, but not in the launcher
        "electrum_joinmarket/link/daemon.py:1",   # the launcher, but at module level
        "electrum_joinmarket/deep.py:1",          # relative import above the package
        "scripts/tool.py:1",                      # outside tests/, imports tests
        "tests/sub/test_y.py:1",                  # a test module importing its conftest
        "tests/sub/test_y.py:2",                  # ... or the root one
    }, r.stdout
    assert r.stdout.strip().endswith("13 violation(s)")


def test_checker_refuses_a_wrong_root(tmp_path):
    r = run_checker(tmp_path)
    assert r.returncode == 2 and "wrong root" in r.stderr
