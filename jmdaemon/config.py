"""Daemon settings: a config file in the data dir (INI) plus command-line flags (flags win).

File layout (all optional)::

    [daemon]
    host = 127.0.0.1
    port = 27183
    network = mainnet          # mainnet | testnet | signet | regtest
    loglevel = INFO
    logfile = jmdaemon.log     # relative to the data dir; empty for none
    ssl_cert =                 # PEM certificate and key: serve AMP over TLS
    ssl_key =
    authentication = on        # off: also serve clients that do not prove they know the cookie
                               # (reference clients); see docs/daemon-auth.md

    [tor]                      # defaults merged into every client channel config
    socks5_host = localhost
    socks5_port = 9050
    tor_control_host = localhost
    tor_control_port = 9051

    [MESSAGING:anything]       # default channels, used when a client's JMInit sends none
    type = irc                 # or onion
    host = irc.example.org
    port = 6697
    channel = joinmarket-pit
    usessl = true

    [directory]                # settings for --directory-node mode
    host = 127.0.0.1
    port = 5222
    motd = ...
    hidden_service_dir = hidden_service
"""
from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, field
from typing import Any

from jmcore.constants import DEFAULT_DAEMON_PORT, NETWORKS

LOGLEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(Exception):
    """A bad setting in the config file or on the command line (reported without traceback)."""


@dataclass
class DaemonConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_DAEMON_PORT
    datadir: str = "."
    network: str = "mainnet"
    loglevel: str = "INFO"
    logfile: str = ""
    ssl_cert: str = ""
    ssl_key: str = ""
    authentication: bool = True
    tor: dict[str, Any] = field(default_factory=dict)
    channels: list[dict[str, Any]] = field(default_factory=list)
    directory: dict[str, Any] = field(default_factory=dict)

    def channel_defaults(self) -> dict[str, dict[str, Any]]:
        onion_keys = ("socks5_host", "socks5_port", "tor_control_host", "tor_control_port",
                      "tor_control_password", "onion_serving_host")
        irc_keys = ("socks5_host", "socks5_port")
        return {"onion": {k: v for k, v in self.tor.items() if k in onion_keys},
                "irc": {k: v for k, v in self.tor.items() if k in irc_keys}}


def _int(value: object, what: str, lo: int = 0, hi: int = 65535) -> int:
    try:
        n = int(value)  # type: ignore[call-overload]  # anything: ConfigError below
    except (TypeError, ValueError):
        raise ConfigError("%s must be an integer, not %r" % (what, value)) from None
    if not lo <= n <= hi:
        raise ConfigError("%s must be between %d and %d" % (what, lo, hi))
    return n


def load_config_file(path: str | None, cfg: DaemonConfig) -> DaemonConfig:
    """Read an INI file into cfg (missing file = defaults)."""
    if not path or not os.path.exists(path):
        return cfg
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except (configparser.Error, UnicodeDecodeError, OSError) as exc:
        raise ConfigError("cannot read config file %s: %s" % (path, exc)) from exc
    known = {"daemon", "tor", "directory"}
    for section in parser.sections():
        if section not in known and not section.startswith("MESSAGING:"):
            raise ConfigError("unknown section [%s] in %s" % (section, path))
    if parser.has_section("daemon"):
        d = parser["daemon"]
        for key in d:
            if key not in ("host", "port", "network", "loglevel", "logfile", "ssl_cert", "ssl_key",
                           "authentication"):
                raise ConfigError("unknown setting %r in [daemon] of %s" % (key, path))
        cfg.host = d.get("host", cfg.host)
        if "port" in d:
            cfg.port = _int(d["port"], "[daemon] port", 1)
        cfg.network = d.get("network", cfg.network)
        cfg.loglevel = d.get("loglevel", cfg.loglevel)
        cfg.logfile = d.get("logfile", cfg.logfile)
        cfg.ssl_cert = d.get("ssl_cert", cfg.ssl_cert)
        cfg.ssl_key = d.get("ssl_key", cfg.ssl_key)
        if "authentication" in d:
            value = d["authentication"].strip().lower()
            if value not in ("on", "off", "true", "false", "yes", "no", "1", "0"):
                raise ConfigError("[daemon] authentication must be on or off, not %r"
                                  % d["authentication"])
            cfg.authentication = value in ("on", "true", "yes", "1")
    if parser.has_section("tor"):
        cfg.tor = dict(parser["tor"])
        for key in ("socks5_port", "tor_control_port"):
            if key in cfg.tor:
                cfg.tor[key] = _int(cfg.tor[key], "[tor] " + key, 1)
    if parser.has_section("directory"):
        cfg.directory = dict(parser["directory"])
    for section in parser.sections():
        if section.startswith("MESSAGING:"):
            chan: dict[str, Any] = dict(parser[section])
            chan.setdefault("type", "irc")
            if "port" in chan:
                chan["port"] = _int(chan["port"], "[%s] port" % section, 1)
            cfg.channels.append(chan)
    return cfg


def validate(cfg: DaemonConfig) -> DaemonConfig:
    if cfg.network not in NETWORKS:
        raise ConfigError("network must be one of %s, not %r" % (", ".join(NETWORKS), cfg.network))
    if cfg.loglevel.upper() not in LOGLEVELS:
        raise ConfigError("loglevel must be one of %s" % ", ".join(LOGLEVELS))
    cfg.loglevel = cfg.loglevel.upper()
    _int(cfg.port, "port", 0)
    return cfg
