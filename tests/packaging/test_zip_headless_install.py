"""Issue 14.9: the zip plugin installed headless, as documented (README, packaging/README.md),
with the script shipped next to the zip: ``sudo install_zip_plugin.py set-key`` writes the
plugins key as root, ``install_zip_plugin.py install ZIP`` as the user copies, authorizes and
enables it, and a plain ``electrum daemon`` (no project code on its path) then answers
``joinmarket_status`` from the zip. The refusals (as root, wrong password, Electrum running) are
one line each, exit status 1, and change nothing."""
from __future__ import annotations

import json
import pathlib
import shutil
import sys

import pytest

from devstack.electrum_config import ensure_rpc_credentials

from . import sandbox
from .helpers import DIST

pytestmark = pytest.mark.e2e


def test_headless_install_script_as_documented(plugin_zip):
    reason = sandbox.namespace_support()
    assert reason is None, f"the zip-plugin test needs a private mount namespace: {reason}"
    from electrum_joinmarket.loader import find_electrum_script
    electrum_script = find_electrum_script()
    installer = DIST / "install_zip_plugin.py"
    assert installer.is_file(), "build_plugin_zip.py must ship install_zip_plugin.py next to the zip"
    base = sandbox.make_user_dir()
    try:
        user, ro = base / "user", base / "root-only"
        edir = user / "electrum"
        ensure_rpc_credentials(edir)    # as `electrum daemon -d` would; the script runs it in the foreground
        shutil.copyfile(plugin_zip, user / plugin_zip.name)
        shutil.copyfile(installer, user / "install_zip_plugin.py")
        (user / "pw.txt").write_text("correct horse\n")
        (user / "bad.txt").write_text("wrong horse\n")
        (ro / "pw.txt").write_text("correct horse\n")
        q = lambda p: "'" + str(p) + "'"           # paths here have no quotes
        py = q(sys.executable)
        inst = f"{py} {q(user / 'install_zip_plugin.py')}"
        el = f"{py} {q(electrum_script)} --regtest -D {q(edir)}"
        zipf = q(user / plugin_zip.name)
        root_script = f"""
{inst} set-key --password-file {ro}/pw.txt > {ro}/setkey.out 2> {ro}/setkey.err
{inst} set-key --password-file {ro}/pw.txt > {ro}/setkey2.out 2> {ro}/setkey2.err
stat -c '%U %a' /etc/electrum/plugins_key > {ro}/keystat.txt
set +e
{inst} install {zipf} -D {ro}/rootdir --regtest \\
    --password-file {ro}/pw.txt > {ro}/asroot.out 2> {ro}/asroot.err
echo $? > {ro}/asroot.rc
"""
        user_script = f"""
set +e
{inst} install {zipf} -D electrum --regtest --password-file bad.txt > bad.out 2> bad.err; echo $? > bad.rc
{inst} install {zipf} -D electrum --regtest \\
    --password-file pw.txt > install.out 2> install.err; echo $? > install.rc
{inst} status -D electrum --regtest > status.out 2> status.err
{el} --offline daemon > daemon.out 2>&1 &
{sandbox.wait_for_electrum_rpc_sh(edir)}
ok=0
for i in $(seq 1 120); do
  if {el} joinmarket_status > jmstatus.json 2> jmstatus.err; then ok=1; break; fi
  sleep 0.5
done
echo $ok > jmstatus.ok
{inst} install {zipf} -D electrum --regtest \\
    --password-file pw.txt > running.out 2> running.err; echo $? > running.rc
{el} stop > stop.out 2>&1
wait
{inst} install {zipf} -D electrum --regtest \\
    --password-file pw.txt > again.out 2> again.err; echo $? > again.rc
"""
        r = sandbox.run_as_test_user(base, key_hex=None, user_script=user_script,
                                     root_script=root_script,
                                     expose=sandbox.python_paths() + [electrum_script])
        read = lambda p: p.read_text() if p.exists() else f"<{p.name} missing>"
        diag = f"rc={r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}\n" + "\n".join(
            f"--- {p.name}\n{read(p)[-1500:]}" for p in sorted(user.glob("*.err")) + [user / "daemon.out"])
        assert r.returncode == 0, diag

        # as root: the key, root-owned 0644, written once (a second run with the same password is a no-op)
        assert read(ro / "setkey.out").strip() == ("wrote /etc/electrum/plugins_key (root-owned, "
                                                  "0644); now run 'install' as the user who runs Electrum")
        assert read(ro / "setkey2.out").strip() == ("/etc/electrum/plugins_key already holds the key "
                                                   "of this password: nothing to do")
        assert read(ro / "keystat.txt").split() == ["root", "644"]
        # install as root: refused in one line
        assert read(ro / "asroot.rc").strip() == "1"
        assert read(ro / "asroot.err").strip() == (
            "install_zip_plugin: do not install as root: Electrum never loads zip plugins for root "
            "(it cannot trust a key file root can write); run this as the user who runs Electrum")
        # a wrong password: refused, nothing installed
        assert read(user / "bad.rc").strip() == "1", diag
        assert read(user / "bad.err").strip() == ("install_zip_plugin: wrong plugins password (not "
                                                 "the one /etc/electrum/plugins_key was made with)")
        # the install
        assert read(user / "install.rc").strip() == "0", diag
        installed = edir / "regtest" / "plugins" / plugin_zip.name
        manifest = json.loads((pathlib.Path(__file__).parents[2] / "electrum_joinmarket" /
                               "manifest.json").read_text())
        assert read(user / "install.out").strip() == (
            f"installed joinmarket {manifest['version']} into {installed}; authorized and "
            f"enabled: start Electrum to load it")
        assert installed.read_bytes() == plugin_zip.read_bytes()
        config = json.loads((edir / "regtest" / "config").read_text())
        assert config["plugins"]["joinmarket"]["enabled"] is True
        assert len(config["plugins"]["joinmarket"]["authorized"]) >= 128
        status = read(user / "status.out")
        assert "plugins key: usable" in status
        assert f"joinmarket {manifest['version']}: {installed}; authorized=True enabled=True" in status
        # plain Electrum (no project code on its path) loads it from the zip and answers
        assert read(user / "jmstatus.ok").strip() == "1", diag
        st = json.loads(read(user / "jmstatus.json"))
        assert isinstance(st, dict), (st, diag)
        assert st["plugin"] == "joinmarket" and st["enabled"] is True
        # Electrum running on that dir: refused (it would overwrite the config)
        assert read(user / "running.rc").strip() == "1", diag
        assert read(user / "running.err").startswith("install_zip_plugin: Electrum is running on ")
        # again, Electrum stopped: idempotent
        assert read(user / "again.rc").strip() == "0", diag
        assert read(user / "again.out").strip() == (f"joinmarket {manifest['version']} is already "
                                                   "installed and authorized; enabled")
    finally:
        sandbox.cleanup(base)
