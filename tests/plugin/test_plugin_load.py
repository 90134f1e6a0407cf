"""The plugin skeleton as Electrum 4.8 loads it: runtime registration of the folder
``electrum_joinmarket`` as plugin ``joinmarket``, ``Plugins(config, 'cmdline'|'qt')`` loading it,
the ``joinmarket_status`` command registered and answering (in-process and through a real
``electrum daemon`` started by our launcher), and per-wallet storage surviving close/reopen."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from devstack.electrum_config import daemon_address, ensure_rpc_credentials
from devstack.procs import wait_for
from electrum_joinmarket import loader
from electrum_joinmarket.loader import PLUGIN_ROOT, register_runtime

ROOT = os.path.dirname(PLUGIN_ROOT)


def _config(tmp_path, **keys):
    from electrum.simple_config import SimpleConfig
    config = SimpleConfig({"electrum_path": str(tmp_path)})
    for k, v in keys.items():
        config.set_key(k, v)
    return config


def test_manifest():
    m = loader.read_manifest()
    assert m["name"] == "joinmarket" and m["fullname"] == "JoinMarket"
    assert m["available_for"] == ["qt", "cmdline"] and m["min_electrum_version"] == "4.8.0"
    assert m["version"] and m["description"]
    from electrum.plugin import PluginMetadata
    meta = PluginMetadata.from_json(m, path=PLUGIN_ROOT)           # Electrum's own validation
    assert meta.is_electrum_version_compatible()


def test_electrum_names_a_directory_plugin_after_its_folder(tmp_path):
    """Why the loader exists: Electrum 4.8's directory discovery takes the plugin name from the
    folder, not from manifest.json, so this folder alone would become 'electrum_joinmarket'."""
    from electrum.plugin import Plugins
    config = _config(tmp_path, **{"plugins.electrum_joinmarket.enabled": True})
    p = Plugins(config, cmd_only=True)
    p.find_directory_plugins(ROOT, external=False)
    meta = p.internal_plugin_metadata["electrum_joinmarket"]
    assert meta.name == "electrum_joinmarket" != loader.read_manifest()["name"]
    assert "joinmarket" not in p.internal_plugin_metadata


def test_register_runtime_then_plugins_cmdline_loads_it(tmp_path, plugins_factory):
    from electrum.commands import Commands, known_commands

    from electrum_joinmarket.plugin import JoinMarketPlugin
    config = _config(tmp_path, **{"plugins.joinmarket.enabled": True})
    assert register_runtime() == "joinmarket" and register_runtime() == "joinmarket"  # idempotent
    assert loader.is_registered()
    plugins = plugins_factory(config, "cmdline")
    plugin = plugins.get("joinmarket")
    assert isinstance(plugin, JoinMarketPlugin)
    assert type(plugin).__module__ == "electrum.plugins.joinmarket.cmdline"
    meta = plugins.get_metadata("joinmarket")
    assert meta.path == PLUGIN_ROOT and meta.fullname == "JoinMarket" and plugins.is_internal("joinmarket")
    # the core exists once: the GUI module imports electrum_joinmarket.plugin absolutely
    assert "electrum.plugins.joinmarket.plugin" not in sys.modules
    assert sys.modules["electrum.plugins.joinmarket"].__file__ == os.path.join(PLUGIN_ROOT, "__init__.py")
    assert "joinmarket_status" in known_commands and hasattr(Commands, "joinmarket_status")
    status = plugin.status()
    assert status["plugin"] == "joinmarket" and status["enabled"] is True
    assert status["daemon"] == "127.0.0.1:27183" and status["fee_limits_set"] is False
    assert status["settings"]["order_chooser"] == "fidelity_bond"


def test_commands_register_once_and_only_through_the_plugin_module():
    """Module-level @plugin_commands (commands.py): a library import of the package registers
    nothing; executing the init module as a plugin module registers all of them, and executing it
    again (Electrum does, per Plugins object) registers nothing twice and raises nothing."""
    code = """if True:
        import importlib.util, os
        from electrum.commands import known_commands
        import electrum_joinmarket, electrum_joinmarket.plugin, electrum_joinmarket.runner
        ours = lambda: sorted(c for c in known_commands if c.startswith("joinmarket_"))
        print(ours())
        init = os.path.join(os.path.dirname(electrum_joinmarket.__file__), "__init__.py")
        for name in ("electrum.plugins.joinmarket", "electrum_external_plugins.joinmarket"):
            spec = importlib.util.spec_from_file_location(name, init)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
            print(ours())
    """
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    from electrum_joinmarket.commands import __all__ as names
    assert {"status", "coinjoin", "progress", "cancel", "orderbook", "start_maker", "stop_maker",
            "history", "depths", "set_depth", "depth_settings", "schedule_create", "schedule_start",
            "schedule_status", "schedule_stop", "schedule_address"} <= set(names)
    every = sorted(f"joinmarket_{c}" for c in names)
    assert r.stdout.splitlines() == ["[]", repr(every), repr(every)], r.stdout + r.stderr
    assert "could not register" not in r.stderr


def test_a_failing_command_module_never_stops_electrum_from_starting():
    """The init module runs before Electrum parses its command line: if registering the commands
    fails, it logs and Electrum goes on (here: the commands module cannot be imported)."""
    code = """if True:
        import importlib.util, os, sys
        import electrum_joinmarket
        sys.modules["electrum_joinmarket.commands"] = None      # import of it raises ImportError
        init = os.path.join(os.path.dirname(electrum_joinmarket.__file__), "__init__.py")
        spec = importlib.util.spec_from_file_location("electrum.plugins.joinmarket", init)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
        print("still running")
    """
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "still running", r.stdout + r.stderr


def test_qt_gui_module_loads_without_touching_qt(tmp_path, plugins_factory):
    from electrum_joinmarket.plugin import JoinMarketPlugin
    config = _config(tmp_path, **{"plugins.joinmarket.enabled": True})
    plugin = plugins_factory(config, "qt").get("joinmarket")
    assert isinstance(plugin, JoinMarketPlugin)
    assert type(plugin).__module__ == "electrum.plugins.joinmarket.qt"
    assert plugin.requires_settings()           # the Qt GUI offers a settings dialog


def test_disabled_plugin_is_listed_but_not_loaded(tmp_path, plugins_factory):
    config = _config(tmp_path, **{"plugins.joinmarket.enabled": False})
    plugins = plugins_factory(config, "cmdline")
    assert plugins.get("joinmarket") is None
    assert "joinmarket" in plugins.descriptions                 # the GUI can offer to enable it
    from electrum.plugin import Plugins
    cmd_only = Plugins(config, cmd_only=True)                  # Electrum's pre-argparse pass
    assert "joinmarket" not in cmd_only.descriptions            # disabled: not even imported


def test_settings_are_config_vars_and_fee_limits_have_no_default(tmp_path, plugins_factory):
    from decimal import Decimal

    from electrum_joinmarket.plugin import FeeLimitsUnset
    config = _config(tmp_path, **{"plugins.joinmarket.enabled": True})
    plugin = plugins_factory(config).get("joinmarket")
    assert config.cv.from_key("plugins.joinmarket.daemon_port").get() == 27183
    with pytest.raises(FeeLimitsUnset):
        plugin.fee_limits()
    config.set_key("plugins.joinmarket.max_cj_fee_abs", 20000)
    with pytest.raises(FeeLimitsUnset):
        plugin.fee_limits()
    config.set_key("plugins.joinmarket.max_cj_fee_rel", "0.002")
    limits = plugin.fee_limits()
    assert limits.max_abs == 20000 and limits.max_rel == Decimal("0.002")
    assert plugin.status()["fee_limits_set"] is True
    config.JM_DAEMON_PORT = 27999
    assert plugin.daemon_address == ("127.0.0.1", 27999)
    assert plugin.order_chooser_name() == "fidelity_bond" and plugin.bondless_allowance() == 0.125


def test_fee_limits_from_settings_and_command_arguments(tmp_path, plugins_factory):
    """One parser for both: a command argument wins over the setting, either may be typed text,
    and a limit missing from both is refused (never defaulted)."""
    from decimal import Decimal

    from electrum_joinmarket.plugin import FeeLimitsUnset
    config = _config(tmp_path, **{"plugins.joinmarket.enabled": True})
    plugin = plugins_factory(config).get("joinmarket")
    with pytest.raises(FeeLimitsUnset):
        plugin.fee_limits(max_abs="30000")                       # rel unset everywhere
    limits = plugin.fee_limits(max_abs="30 000", max_rel="0.5%")
    assert (limits.max_abs, limits.max_rel) == (30000, Decimal("0.005"))
    config.set_key("plugins.joinmarket.max_cj_fee_abs", "20000")   # as `setconfig` may store it
    config.set_key("plugins.joinmarket.max_cj_fee_rel", "0.2%")
    assert plugin.fee_limits().max_abs == 20000 and plugin.fee_limits().max_rel == Decimal("0.002")
    assert plugin.fee_limits(max_rel="0.001").max_rel == Decimal("0.001")
    config.set_key("plugins.joinmarket.max_cj_fee_rel", "two percent")
    from electrum_joinmarket.market.limits import FeeLimitError
    with pytest.raises(FeeLimitError):
        plugin.fee_limits()
    assert plugin.status()["fee_limits_set"] is False


# --- on the stack: real daemon, real wallets ------------------------------------------------------

@pytest.mark.stack
def test_joinmarket_status_command_answers_through_commands(electrum_node, jm_plugin, make_wallet):
    w = make_wallet()
    cmds = electrum_node.commands()
    res = electrum_node.run(cmds.joinmarket_status())
    assert res["plugin"] == "joinmarket" and res["enabled"] is True
    assert w.basename() in [s["wallet"] for s in res["sessions"]]
    json.dumps(res)                                           # JSON-able for the RPC answer


@pytest.mark.stack
def test_wallet_storage_survives_close_and_reopen(electrum_node, jm_plugin, make_wallet):
    from electrum.plugin import run_hook
    w = make_wallet()
    session = jm_plugin.session_for(w, create=False)
    assert session is not None, "daemon_wallet_loaded should have opened a session"
    commitment = os.urandom(32).hex()
    assert session.commitments.mark_used(commitment.upper()) is True
    path = w.storage.path
    electrum_node.close_wallet(w)
    assert jm_plugin.session_for(w, create=False) is None     # daemon no longer holds it
    w2 = electrum_node.load_wallet(path)
    try:
        s2 = jm_plugin.session_for(w2, create=False)
        assert s2 is not None and s2 is not session
        assert s2.commitments.is_used(commitment)
        assert commitment in json.dumps(w2.db.get_plugin_storage()["joinmarket"])
        # the GUI hooks: Qt's close_wallet drops the session, load_wallet opens one again
        run_hook("close_wallet", w2)
        assert jm_plugin.session_for(w2, create=False) is None
        run_hook("load_wallet", w2, None)
        assert jm_plugin.session_for(w2, create=False).commitments.is_used(commitment)
    finally:
        electrum_node.close_wallet(w2)


# --- a real Electrum process started through our launcher ---------------------------------------

def _electrum(datadir, *args, timeout=120):
    cmd = [sys.executable, "-m", "electrum_joinmarket.loader", "--regtest", "-D", str(datadir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.stack
def test_launcher_electrum_daemon_serves_joinmarket_status(tmp_path, loop):
    """`python -m electrum_joinmarket.loader` = Electrum's own script with the plugin registered:
    the CLI knows the command before argparse, and a real `electrum daemon` answers it."""
    assert loader.find_electrum_script()
    r = _electrum(tmp_path, "--offline", "setconfig", "plugins.joinmarket.enabled", "true")
    assert r.returncode == 0, r.stderr
    r = _electrum(tmp_path, "joinmarket_status", "--help")
    assert r.returncode == 0 and "JoinMarket plugin status" in r.stdout, r.stdout + r.stderr
    ensure_rpc_credentials(tmp_path)     # else the first client races the daemon to make them
    daemon = subprocess.Popen([sys.executable, "-m", "electrum_joinmarket.loader", "--regtest",
                               "-D", str(tmp_path), "daemon", "--offline"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: daemon_address(tmp_path), 60, "the Electrum daemon's RPC server", proc=daemon)

        def answered():
            r = _electrum(tmp_path, "joinmarket_status")
            return r if r.returncode == 0 else None
        r = wait_for(answered, 60, "the Electrum daemon to answer joinmarket_status", proc=daemon)
        status = json.loads(r.stdout)
        assert isinstance(status, dict), r.stdout
        assert status["plugin"] == "joinmarket" and status["enabled"] is True
        assert status["sessions"] == []
        # a user's mistake is Electrum's UserFacingException: one line on stderr, no traceback
        r = _electrum(tmp_path, "create", "--seed_type", "segwit")
        assert r.returncode == 0, r.stderr
        wallet = json.loads(r.stdout)["path"]
        assert _electrum(tmp_path, "load_wallet", "-w", wallet).returncode == 0
        dest = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
        r = _electrum(tmp_path, "joinmarket_coinjoin", dest, "0.001", "-w", wallet)
        assert r.returncode == 1 and r.stdout == ""
        prefix = f"electrum --regtest -D {tmp_path}"       # the commands work as written
        assert r.stderr.splitlines() == [
            f"coinjoin fee limits are not set: a maker is refused only if its fee is above both; "
            f"set them with '{prefix} setconfig plugins.joinmarket.max_cj_fee_rel 0.004' and "
            f"'{prefix} setconfig plugins.joinmarket.max_cj_fee_abs 20000' (your values), or "
            f"give --max_cj_fee_rel and --max_cj_fee_abs to this command"], r.stderr
        r = _electrum(tmp_path, "joinmarket_coinjoin", dest, "0.001", "--max_cj_fee_abs", "2000",
                      "--max_cj_fee_rel", "two", "-w", wallet)
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
        assert "relative fee limit" in r.stderr and "Traceback" not in r.stderr
        r = _electrum(tmp_path, "stop")
        assert r.returncode == 0, r.stderr
        daemon.wait(30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
