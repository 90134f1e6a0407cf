"""The plugin zip: layout Electrum 4.8 expects, reproducible, and installed into a fresh Electrum
data dir through Electrum's own external-plugin mechanism (key file at the fixed
/etc/electrum/plugins_key, signature in ``plugins.joinmarket.authorized``) by an unprivileged
user: it loads from the zip (plugin *and* jmcore code from the archive), its command answers from
a real ``electrum daemon``, and its daemon link starts the binary placed next to the data dir."""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import secrets
import shutil
import subprocess
import sys
import zipfile

import pytest

from devstack.electrum_config import ensure_rpc_credentials
from devstack.procs import free_port

from . import sandbox
from .helpers import ROOT

pytestmark = pytest.mark.e2e


def test_zip_layout_is_what_electrum_expects(plugin_zip):
    manifest = json.loads((ROOT / "electrum_joinmarket" / "manifest.json").read_text())
    name = manifest["name"]
    with zipfile.ZipFile(plugin_zip) as zf:
        names = zf.namelist()
        assert names[0] == f"{name}/manifest.json"          # Electrum takes the first *manifest.json
        assert [n for n in names if n.endswith("manifest.json")] == [names[0]]
        assert json.loads(zf.read(names[0])) == manifest
        assert all(n.startswith(f"{name}/") for n in names)
        init = zf.read(f"{name}/__init__.py").decode()
        for info in zf.infolist():
            assert info.date_time[0] >= 1980 and (info.external_attr >> 16) == 0o100644
    rel = sorted(n[len(name) + 1:] for n in names)
    pkg = ROOT / "electrum_joinmarket"
    plugin_files = sorted(p.relative_to(pkg).as_posix() for p in pkg.rglob("*.py")
                          if "__pycache__" not in p.parts and p != pkg / "loader.py") + ["manifest.json"]
    plugin_files += ["joinmarket.png"]        # the manifest's icon (Electrum reads it from the zip)
    jmcore_files = sorted("jmcore/" + p.name for p in (ROOT / "jmcore").glob("*.py"))
    assert rel == sorted(plugin_files + jmcore_files + ["_zipimports.py"])   # nothing else
    assert not any(re.search(r"(^|/)(tests?|jmdaemon|__pycache__)(/|$)|\.pyc$", n) for n in rel)
    # the original __init__ is kept, with the guarded shim call after its docstring
    original = (ROOT / "electrum_joinmarket" / "__init__.py").read_text()
    assert "_ejm_install(__name__)" in init
    end_marker = "# --- end of addition\n"
    added = init[init.index("# --- added by"):init.index(end_marker) + len(end_marker)]
    assert init.replace(added, "").split() == original.split()
    # one version everywhere
    from electrum_joinmarket.plugin import PLUGIN_VERSION
    from jmdaemon import __version__
    assert manifest["version"] == PLUGIN_VERSION == __version__
    assert plugin_zip.name == f"{name}-{manifest['version']}.zip"


def test_zip_build_is_reproducible(plugin_zip, tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "packaging" / "build_plugin_zip.py"),
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    again = tmp_path / plugin_zip.name
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(plugin_zip.read_bytes()).digest()


def _plugin_key(password: str) -> str:
    """What Electrum's Plugins.create_new_key(password) stores in /etc/electrum/plugins_key."""
    from electrum.plugin import PLUGIN_PASSWORD_VERSION, Plugins
    salt = os.urandom(32)
    pub = Plugins.derive_privkey(password, salt).get_public_key_bytes()
    return (bytes([PLUGIN_PASSWORD_VERSION]) + salt + pub).hex()


def _last_json(text: str) -> dict:
    lines = [l for l in text.strip().splitlines() if l.startswith("{")]
    assert lines, text[-3000:]
    return json.loads(lines[-1])


def test_zip_installs_and_runs_in_electrum_as_unprivileged_user(plugin_zip, daemon_binary):
    reason = sandbox.namespace_support()
    assert reason is None, f"the zip-plugin test needs a private mount namespace: {reason}"
    from electrum_joinmarket.loader import find_electrum_script
    electrum_script = find_electrum_script()
    assert electrum_script, "Electrum's launcher script not found"
    before = _real_state()
    base = sandbox.make_user_dir()
    try:
        user = base / "user"
        edir = user / "electrum"                 # a fresh Electrum data dir (-D)
        edir.mkdir()
        ensure_rpc_credentials(edir)    # as `electrum daemon -d` would; the script runs it in the foreground
        zip_copy = user / plugin_zip.name        # the file the user picks in "Add plugin"
        shutil.copyfile(plugin_zip, zip_copy)
        shutil.copyfile(daemon_binary, edir / "jmdaemon")   # documented place: next to the data dir
        os.chmod(edir / "jmdaemon", 0o755)
        shutil.copyfile(pathlib.Path(__file__).with_name("zip_user_side.py"), user / "zip_user_side.py")
        password = secrets.token_hex(12)
        port = free_port()
        py = sys.executable
        q = lambda p: "'" + str(p) + "'"           # paths here have no quotes
        el = f"{q(py)} {q(electrum_script)} --regtest -D {q(edir)}"
        user_script = f"""
id -u > uid.txt
{q(py)} zip_user_side.py install {q(zip_copy)} {q(edir)} {q(password)} {port} > install.out 2> install.err
{el} --offline daemon > daemon.out 2>&1 &
{sandbox.wait_for_electrum_rpc_sh(edir)}
# each client is bounded: a hung one is stopped with SIGABRT, on which Python's faulthandler
# prints every thread's stack into status.err (seen once under load: one client never exited)
ok=0
hung=0
end=$((SECONDS + 90))
while [ $SECONDS -lt $end ]; do
  # (the script runs under set -e: a failing command is tested by if, never run bare)
  if PYTHONFAULTHANDLER=1 timeout -s ABRT -k 5 60 {el} joinmarket_status > status.json 2> status.err
  then ok=1; break; else rc=$?; fi
  if [ $rc -eq 124 ] || [ $rc -eq 134 ] || [ $rc -eq 137 ]; then hung=1; break; fi
  sleep 0.5
done
timeout -k 5 60 {el} stop > stop.out 2>&1 || true
wait || true
echo "status_ok=$ok hung=$hung" > done.txt
"""
        ro = f"{base}/root-only"
        root_script = f"""
mkdir -p {ro}/eroot
{q(py)} {q(user / 'zip_user_side.py')} keycheck {ro}/eroot > {ro}/keycheck.out 2> {ro}/keycheck.err || true
"""
        r = sandbox.run_as_test_user(base, key_hex=_plugin_key(password), user_script=user_script,
                                     root_script=root_script,
                                     expose=sandbox.python_paths() + [electrum_script])
        diag = f"rc={r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
        for f in ("install.err", "daemon.out", "status.err"):
            if (user / f).exists():
                diag += f"\n--- {f}\n" + (user / f).read_text(errors="replace")[-3000:]
        assert r.returncode == 0, diag

        # Electrum never trusts the key file for root; it does for the test user
        assert _last_json((base / "root-only" / "keycheck.out").read_text())["key_trusted"] is False
        uid = int((user / "uid.txt").read_text())
        assert uid != 0
        out = _last_json((user / "install.out").read_text())
        assert out["uid"] == uid and out["key_trusted"] is True, diag
        assert out["manifest"]["name"] == "joinmarket" and out["manifest"]["dirname"] == "joinmarket"
        assert out["installed_path"] == str(edir / "regtest" / "plugins" / plugin_zip.name)
        assert out["authorized"] is True and out["is_external"] is True
        assert out["config_authorized"] and out["config_enabled"] is True
        assert out["plugin_class"] == "electrum_joinmarket.plugin.JoinMarketPlugin" \
            or out["plugin_class"].startswith("electrum_external_plugins.joinmarket.")
        assert "joinmarket_status" in out["commands"]
        # every module of the plugin and of jmcore came out of the authorized zip, none from disk
        mods = out["modules"]
        assert "electrum_external_plugins.joinmarket.jmcore.constants" in mods
        zip_prefix = str(edir / "regtest" / "plugins" / plugin_zip.name) + "/joinmarket/"
        assert mods.pop("electrum_external_plugins") is None     # the shim's empty parent package
        for mod, path in mods.items():
            assert path and path.startswith(zip_prefix), (mod, path)
        assert mods["electrum_joinmarket.plugin"] == zip_prefix + "plugin.py"
        assert mods["jmcore.constants"] == zip_prefix + "jmcore/constants.py"
        assert out["status"]["plugin"] == "joinmarket" and out["status"]["enabled"] is True
        # the zip's daemon link started the binary next to the data dir, then stopped it
        link = out["daemon_link"]
        assert out["daemon_link_module"] == zip_prefix + "link/daemon.py"
        assert link["status"] == "started_binary", link
        assert link["binary"] == str(edir / "jmdaemon") and link["port"] == port
        assert out["daemon_link_stopped"]["status"] == "stopped"
        assert out["twisted_imported"] is False and out["jmdaemon_imported"] is False

        # and the command answers from a real Electrum daemon run by the user
        assert (user / "done.txt").read_text().strip() == "status_ok=1 hung=0", diag
        status = json.loads((user / "status.json").read_text())
        assert isinstance(status, dict), (status, diag)
        assert status["plugin"] == "joinmarket" and status["enabled"] is True, status
        assert status["plugin_version"] == out["manifest"]["version"]
    finally:
        sandbox.cleanup(base)
    assert _real_state() == before      # the real /etc (key file, users) and /root are untouched


def _real_state():
    import subprocess as sp
    key = pathlib.Path("/etc/electrum/plugins_key")
    return {"key": (key.read_bytes(), key.stat().st_mtime_ns) if key.exists() else None,
            "user": sp.run(["getent", "passwd", sandbox.TEST_USER], capture_output=True).stdout,
            "root_mode": os.stat("/root").st_mode, "mounts": pathlib.Path("/proc/self/mounts").read_text()}
