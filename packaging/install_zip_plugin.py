#!/usr/bin/env python3
"""Install an Electrum >= 4.8 zip plugin without the GUI: what Tools -> Plugins -> "Add plugin"
does, for headless machines (``electrum daemon``). Shipped next to the JoinMarket plugin zip
(``dist/install_zip_plugin.py``); uses only Electrum's own plugin API, so run it with the Python
that runs Electrum (Debian/Ubuntu package: ``python3``; pip install: that venv's ``python``).

Electrum loads a zip plugin only if (1) a *plugins key* made from a password you choose is in
``/etc/electrum/plugins_key``, owned by root and not writable by you, and (2) your Electrum
config holds a signature of the zip made with that password. Hence two steps:

    # once per machine, as root (what Electrum's "Auto-Setup" does with pkexec):
    sudo python3 install_zip_plugin.py set-key
    # as the user who runs Electrum (never root: Electrum ignores zip plugins for root), with
    # Electrum stopped; add --testnet/--signet/--regtest and -D DIR as you run Electrum:
    python3 install_zip_plugin.py install joinmarket-0.1.0.zip
    python3 install_zip_plugin.py status             # what Electrum will do at its next start

``install`` copies the zip into ``<Electrum dir>/plugins/`` (per chain: ``~/.electrum/testnet/plugins``
on testnet), writes the signature to ``plugins.<name>.authorized`` and sets
``plugins.<name>.enabled``; an older zip of the same plugin is replaced (its settings kept).
Every new zip needs ``install`` again (the signature covers the zip's sha256).
The password is asked on the terminal, or read from ``--password-file FILE`` (``-`` = stdin).
Exit status 0 on success, 1 with a one-line reason otherwise.
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Optional

KEYFILE = "/etc/electrum/plugins_key"
CHAINS = ("testnet", "testnet4", "signet", "regtest")


class Refused(Exception):
    """A one-line reason the step cannot be done (printed, exit status 1)."""


def _electrum():
    try:
        import electrum  # noqa: F401
        from electrum.plugin import Plugins
    except ImportError:
        raise Refused(f"this Python ({sys.executable}) cannot import Electrum: run the script with "
                      "the Python that runs Electrum (e.g. /usr/bin/python3 for the Debian "
                      "package, or your Electrum venv's python)") from None
    from electrum.version import ELECTRUM_VERSION
    major, minor = (int(x) for x in ELECTRUM_VERSION.split(".")[:2])
    if (major, minor) < (4, 6) or not hasattr(Plugins, "authorize_plugin"):
        raise Refused(f"Electrum {ELECTRUM_VERSION} has no zip plugins (4.8 or newer needed)")
    return Plugins


def _password(args: argparse.Namespace, *, confirm: bool) -> str:
    if args.password_file:
        if args.password_file == "-":
            pw = sys.stdin.readline()
        else:
            with open(args.password_file, encoding="utf-8") as f:
                pw = f.readline()
        pw = pw.rstrip("\r\n")
    else:
        pw = getpass.getpass("Electrum plugins password: ")
        if confirm and getpass.getpass("Again: ") != pw:
            raise Refused("the two passwords differ")
    if not pw:
        raise Refused("the plugins password cannot be empty")
    return pw


def _config(args: argparse.Namespace):
    from electrum.simple_config import SimpleConfig
    options: dict = {}
    if args.dir:
        options["electrum_path"] = os.path.abspath(os.path.expanduser(args.dir))
    chain = next((c for c in CHAINS if getattr(args, c, False)), None)
    if chain:
        options[chain] = True
    config = SimpleConfig(options)
    config.get_selected_chain().set_as_network()
    return config


def _stored_key() -> tuple[Optional[bytes], Optional[bytes]]:
    """(pubkey, salt) of the key file, or (None, None) if absent or unreadable."""
    try:
        with open(KEYFILE, encoding="ascii") as f:
            key = bytes.fromhex(f.read().strip())
    except (OSError, ValueError):
        return None, None
    return key[33:], key[1:33]


def set_key(args: argparse.Namespace) -> str:
    Plugins = _electrum()
    if os.name != "posix" or sys.platform == "darwin":
        raise Refused("set-key writes /etc/electrum/plugins_key (Linux); on this system use "
                      "Electrum's Tools -> Plugins dialog once")
    if os.geteuid() != 0:
        raise Refused("set-key writes a root-owned file: run it with sudo (as root)")
    pw = _password(args, confirm=not args.password_file)
    pub, salt = _stored_key()
    if pub is not None and not args.replace:
        if Plugins.derive_privkey(pw, salt).get_public_key_bytes() == pub:
            return f"{KEYFILE} already holds the key of this password: nothing to do"
        raise Refused(f"{KEYFILE} holds the key of another password: use that password, or "
                      "--replace (every zip plugin must then be installed again)")
    from electrum.plugin import PLUGIN_PASSWORD_VERSION
    salt = os.urandom(32)
    pub = Plugins.derive_privkey(pw, salt).get_public_key_bytes()
    key_hex = (bytes([PLUGIN_PASSWORD_VERSION]) + salt + pub).hex()
    os.makedirs(os.path.dirname(KEYFILE), exist_ok=True)
    os.chmod(os.path.dirname(KEYFILE), 0o755)
    tmp = KEYFILE + ".new"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), "w", encoding="ascii") as f:
        f.write(key_hex)
    os.chown(tmp, 0, 0)
    os.chmod(tmp, 0o644)
    os.replace(tmp, KEYFILE)
    return f"wrote {KEYFILE} (root-owned, 0644); now run 'install' as the user who runs Electrum"


def _plugins(config):
    Plugins = _electrum()
    return Plugins(config, gui_name="cmdline")


def _check_user_and_electrum(config) -> None:
    if os.name == "posix" and os.geteuid() == 0:
        raise Refused("do not install as root: Electrum never loads zip plugins for root (it "
                      "cannot trust a key file root can write); run this as the user who runs "
                      "Electrum")
    from electrum import daemon
    if os.path.exists(daemon.get_lockfile(config)):
        raise Refused(f"Electrum is running on {config.electrum_path()} (lock file "
                      f"{daemon.get_lockfile(config)}): stop it first ('electrum stop', or close "
                      "the window), then run this again")


def install(args: argparse.Namespace) -> str:
    config = _config(args)
    _check_user_and_electrum(config)
    plugins = _plugins(config)
    try:
        pub, salt = plugins.get_pubkey_bytes()
        if pub is None:
            raise Refused(f"no usable plugins key: {KEYFILE} is missing, or not owned by root, or "
                          "writable by you; run 'sudo python3 install_zip_plugin.py set-key' first")
        zip_path = os.path.abspath(args.zip)
        manifest = plugins.read_manifest(zip_path)
        name = manifest.name
        if not manifest.is_electrum_version_compatible():
            from electrum.version import ELECTRUM_VERSION
            raise Refused(f"{os.path.basename(zip_path)} does not support Electrum {ELECTRUM_VERSION}")
        privkey = plugins.derive_privkey(_password(args, confirm=False), salt)
        if privkey.get_public_key_bytes() != pub:
            raise Refused(f"wrong plugins password (not the one {KEYFILE} was made with)")
        if plugins.is_internal(name):
            raise Refused(f"Electrum already has a built-in plugin called {name!r}")
        if plugins.is_external(name):
            old = plugins.get_metadata(name)
            if old.zip_hash_sha256 == manifest.zip_hash_sha256 and plugins.is_authorized(name):
                config.enable_plugin(name)
                return f"{name} {manifest.version} is already installed and authorized; enabled"
            plugins.upgrade_external_plugin(manifest, privkey)
            config.enable_plugin(name)
            verb = f"replaced {name} {old.version} with"
        else:
            plugins.add_external_plugin_metadata(manifest)
            plugins.authorize_plugin(name, privkey)     # copies into plugins/, signs, enables
            verb = "installed"
        if not plugins.is_authorized(name):
            raise Refused(f"Electrum does not accept the signature of {name} (bug?)")
        return (f"{verb} {name} {manifest.version} into {plugins.zip_plugin_path(name)}; "
                f"authorized and enabled: start Electrum to load it")
    finally:
        plugins.stop()


def status(args: argparse.Namespace) -> str:
    config = _config(args)
    plugins = _plugins(config)
    try:
        pub, _salt = plugins.get_pubkey_bytes()
        lines = [f"Electrum dir: {config.electrum_path()}",
                 f"plugins key: {'usable' if pub else 'missing or not trusted'} ({KEYFILE})"]
        for name, meta in sorted(plugins.external_plugin_metadata.items()):
            lines.append(f"{name} {meta.version}: {meta.path}; "
                         f"authorized={plugins.is_authorized(name)} "
                         f"enabled={bool(config.get(f'plugins.{name}.enabled'))}")
        if not plugins.external_plugin_metadata:
            lines.append("no zip plugin installed")
        return "\n".join(lines)
    finally:
        plugins.stop()


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_key = sub.add_parser("set-key", help="as root: write /etc/electrum/plugins_key")
    p_key.add_argument("--replace", action="store_true", help="replace a key made with another password")
    p_inst = sub.add_parser("install", help="as the Electrum user: copy, authorize and enable a zip")
    p_inst.add_argument("zip")
    p_stat = sub.add_parser("status", help="show the key and the installed zip plugins")
    for p in (p_key, p_inst):
        p.add_argument("--password-file", help="read the plugins password from this file ('-': stdin)")
    for p in (p_inst, p_stat):
        p.add_argument("-D", "--dir", help="Electrum data dir (default ~/.electrum)")
        for chain in CHAINS:
            p.add_argument(f"--{chain}", action="store_true", help=f"Electrum runs on {chain}")
    args = ap.parse_args(argv)
    try:
        msg = {"set-key": set_key, "install": install, "status": status}[args.cmd](args)
    except Refused as exc:
        print(f"install_zip_plugin: {exc}", file=sys.stderr)
        return 1
    print(msg)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)       # Electrum's Plugins thread is not a daemon thread
