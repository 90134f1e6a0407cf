"""Run one scenario of a ``tests.daemon.*_scenarios`` module in a process of its own (a real
reactor each) and return what it reported: the last stdout line, a JSON object, checked for what
every scenario must hold — no failure, nothing Twisted logged as unhandled, and the library the
code under test must never load not loaded."""
from __future__ import annotations

import json
import subprocess

from devstack.daemons import PY, ROOT


def run_scenario(module: str, name: str, arg: str, *, not_loaded: str,
                 timeout: float = 60) -> tuple[dict, str]:
    """``python -m tests.daemon.<module> <name> <arg>`` -> (its report without the checked keys,
    its stderr). ``not_loaded``: the report's key that must be False."""
    r = subprocess.run([PY, "-m", f"tests.daemon.{module}", name, arg],
                       capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "failure" not in out, out.get("failure")
    assert out.pop("errors") == [], "Twisted logged an unhandled error"
    assert out.pop(not_loaded) is False
    return out, r.stderr
