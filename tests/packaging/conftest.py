"""Packaging tests: the build runs inside the test session (CI runs ``make test`` on a fresh
machine), once per session, through the same scripts as ``make daemon-binary`` / ``make
plugin-zip``. The daemon binary is cached under ``${EJM_CACHE:-~/.cache/electrum-joinmarket}``
keyed by its inputs, so an unchanged tree costs a hash check and, on a fresh checkout, a copy."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from .helpers import DIST, ROOT


@pytest.fixture(scope="session")
def daemon_binary() -> pathlib.Path:
    """dist/jmdaemon, (re)built if its inputs changed (PyInstaller in the cached build venv)."""
    r = subprocess.run([sys.executable, str(ROOT / "packaging" / "build_daemon.py")],
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, "daemon build failed:\n" + r.stdout[-3000:] + r.stderr[-6000:]
    path = DIST / "jmdaemon"
    assert path.is_file()
    return path


@pytest.fixture(scope="session")
def daemon_build_info(daemon_binary) -> dict:
    return json.loads((DIST / "jmdaemon.build.json").read_text())


@pytest.fixture(scope="session")
def plugin_zip() -> pathlib.Path:
    """dist/joinmarket-<version>.zip (rebuilt every session: it takes well under a second and
    is byte-identical for identical sources)."""
    r = subprocess.run([sys.executable, str(ROOT / "packaging" / "build_plugin_zip.py")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, "plugin zip build failed:\n" + r.stdout + r.stderr
    manifest = json.loads((ROOT / "electrum_joinmarket" / "manifest.json").read_text())
    path = DIST / f"{manifest['name']}-{manifest['version']}.zip"
    assert path.is_file()
    return path
