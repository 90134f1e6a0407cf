"""Runs as the unprivileged test user (see test_zip_plugin.py): install the zip plugin into a fresh
Electrum data dir the way Electrum's Qt plugin dialog does (read_manifest ->
add_external_plugin_metadata -> authorize_plugin with the key derived from the plugins password ->
enable), then report what loaded, from where, and what the zip's daemon link does.

    python zip_user_side.py install ZIP ELECTRUM_DIR PASSWORD DAEMON_PORT
    python zip_user_side.py keycheck ELECTRUM_DIR        (is the key file trusted for this uid?)

Prints one JSON object on the last line of stdout.
"""
import asyncio
import json
import os
import sys


def make_plugins(edir):
    from electrum import constants
    from electrum.plugin import Plugins
    from electrum.simple_config import SimpleConfig
    constants.BitcoinRegtest.set_as_network()
    config = SimpleConfig({"electrum_path": edir, "regtest": True})
    return config, Plugins(config, gui_name="cmdline")


def keycheck(edir):
    config, plugins = make_plugins(edir)
    try:
        pubkey, _salt = plugins.get_pubkey_bytes()
        return {"uid": os.getuid(), "key_trusted": pubkey is not None}
    finally:
        plugins.stop()


def install(zip_path, edir, password, daemon_port):
    from electrum.plugin import Plugins
    config, plugins = make_plugins(edir)
    out = {"uid": os.getuid()}
    try:
        pubkey, salt = plugins.get_pubkey_bytes()
        out["key_trusted"] = pubkey is not None
        assert pubkey is not None, "Electrum does not trust /etc/electrum/plugins_key"
        manifest = plugins.read_manifest(zip_path)
        name = manifest.name
        out["manifest"] = {"name": name, "version": manifest.version, "dirname": manifest.dirname}
        plugins.add_external_plugin_metadata(manifest)
        privkey = Plugins.derive_privkey(password, salt)
        assert privkey.get_public_key_bytes() == pubkey, "wrong plugins password"
        plugins.authorize_plugin(name, privkey)            # copies into <dir>/plugins and signs
        out["installed_path"] = plugins.get_metadata(name).path
        out["authorized"] = plugins.is_authorized(name)
        out["is_external"] = plugins.is_external(name)
        plugin = plugins.enable(name)
        out["plugin_class"] = f"{type(plugin).__module__}.{type(plugin).__qualname__}"
        out["modules"] = {n: getattr(m, "__file__", None) for n, m in sorted(sys.modules.items())
                          if n.split(".")[0] in ("electrum_joinmarket", "jmcore")
                          or n.startswith("electrum_external_plugins")}
        out["status"] = plugin.status()
        from electrum.commands import known_commands
        out["commands"] = sorted(c for c in known_commands if c.startswith(name + "_"))
        out["config_authorized"] = bool(config.get(f"plugins.{name}.authorized"))
        out["config_enabled"] = config.get(f"plugins.{name}.enabled")
        # the zip's daemon link: no daemon runs, so it starts <electrum dir>/jmdaemon
        from electrum_joinmarket.link.daemon import DaemonLink
        out["daemon_link_module"] = sys.modules[DaemonLink.__module__].__file__
        config.set_key("plugins.joinmarket.daemon_port", int(daemon_port), save=False)
        config.set_key("plugins.joinmarket.daemon_in_process", False, save=False)

        async def link():
            lk = DaemonLink.from_config(config)
            st = (await lk.ensure()).as_dict()
            stopped = (await lk.stop()).as_dict()
            return st, stopped
        out["daemon_link"], out["daemon_link_stopped"] = asyncio.run(link())
        out["twisted_imported"] = "twisted" in sys.modules
        out["jmdaemon_imported"] = "jmdaemon" in sys.modules
    finally:
        plugins.stop()
    return out


if __name__ == "__main__":
    cmd = sys.argv[1]
    result = keycheck(*sys.argv[2:]) if cmd == "keycheck" else install(*sys.argv[2:])
    print(json.dumps(result, default=str))
    sys.stdout.flush()
    os._exit(0)      # Electrum's threads are non-daemon
