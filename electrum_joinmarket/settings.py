"""The plugin's settings: Electrum config keys ``plugins.joinmarket.*``, declared here once as
``ConfigVar``s on ``SimpleConfig`` (Electrum 4.8's idiom, as ``electrum/plugins/nwc``), so
``electrum setconfig``, the settings dialog and the code all know their types and defaults.

Everything the plugin reads from the config goes through these (``config.JM_DAEMON_PORT``…);
nothing reads ``config.get("plugins.joinmarket…")`` around them. Invariants:

* the coinjoin fee limits have **no default** (``None`` = unset): nothing runs until the user
  sets both (:mod:`electrum_joinmarket.market.limits`; docs/architecture.md invariant 6);
* declaring is idempotent (Electrum asserts on a duplicate key, and Electrum may execute the
  plugin's init module more than once): a second import reuses the first declaration.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

from electrum.simple_config import ConfigVar, SimpleConfig

from electrum_joinmarket.market.feemodel import DEFAULT_MAX_FEERATE
from electrum_joinmarket.market.orders import BONDLESS_MAKERS_ALLOWANCE, DEFAULT_CHOOSER
from jmcore.constants import DEFAULT_DAEMON_PORT

__all__ = ["PLUGIN_NAME", "PLUGIN_VERSION", "CONFIG_VARS", "DaemonSettings", "settings_dict",
           "set_settings"]

PLUGIN_NAME = "joinmarket"
PLUGIN_VERSION = "0.1.0"

CONFIG_VARS: dict[str, str] = {}
"""Setting name (the key after ``plugins.joinmarket.``) → ``SimpleConfig`` attribute."""


def _config_var(attr: str, key: str, **kwargs: Any) -> ConfigVar:
    """Declare ``SimpleConfig.<attr>`` for ``plugins.joinmarket.<key>`` once."""
    CONFIG_VARS[key] = attr
    existing = SimpleConfig.__dict__.get(attr)
    if isinstance(existing, ConfigVar):
        return existing
    var = ConfigVar(f"plugins.{PLUGIN_NAME}.{key}", plugin=PLUGIN_NAME, **kwargs)
    setattr(SimpleConfig, attr, var)
    return var


# --- the daemon link ----------------------------------------------------------------------------
JM_DAEMON_HOST = _config_var("JM_DAEMON_HOST", "daemon_host", default="127.0.0.1", type_=str)
JM_DAEMON_PORT = _config_var("JM_DAEMON_PORT", "daemon_port", default=DEFAULT_DAEMON_PORT, type_=int)
JM_DAEMON_BINARY = _config_var("JM_DAEMON_BINARY", "daemon_binary", default=None)
"""path of the jmdaemon binary to start when none runs (lookup order: link/daemon.py)."""
JM_DAEMON_DATADIR = _config_var("JM_DAEMON_DATADIR", "daemon_datadir", default=None)
"""the daemon's ``--datadir`` (default: the daemon's own, ``~/.jmdaemon``)."""
JM_DAEMON_AUTOSTART = _config_var("JM_DAEMON_AUTOSTART", "daemon_autostart", default=True, type_=bool)
"""False: only use a daemon that already runs."""
JM_DAEMON_IN_PROCESS = _config_var("JM_DAEMON_IN_PROCESS", "daemon_in_process", default=True,
                                   type_=bool)
"""False: never run the daemon inside Electrum (source installs only)."""
JM_DAEMON_AUTHENTICATION = _config_var("JM_DAEMON_AUTHENTICATION", "daemon_authentication",
                                       default=True, type_=bool)
"""True (default): the daemon link is authenticated both ways with the daemon's cookie and a
daemon that cannot prove itself is refused. False: connect without authentication (for a
reference ``joinmarketd``), with a warning (docs/daemon-auth.md)."""
JM_CHANNELS = _config_var("JM_CHANNELS", "channels", default=None)
"""JSON list of message channel configs (``jmcore.channels``); unset = the network's default
directories over Tor."""

# --- a coinjoin ---------------------------------------------------------------------------------
JM_MAX_CJ_FEE_ABS = _config_var("JM_MAX_CJ_FEE_ABS", "max_cj_fee_abs", default=None)
"""sats per maker; no default on purpose."""
JM_MAX_CJ_FEE_REL = _config_var("JM_MAX_CJ_FEE_REL", "max_cj_fee_rel", default=None)
"""fraction of the amount, e.g. "0.004" (text: no float rounding); no default on purpose."""
JM_COUNTERPARTIES = _config_var("JM_COUNTERPARTIES", "counterparties", default=None)
"""number of makers; None = 8."""
JM_MINIMUM_MAKERS = _config_var("JM_MINIMUM_MAKERS", "minimum_makers", default=4, type_=int)
JM_ORDER_CHOOSER = _config_var("JM_ORDER_CHOOSER", "order_chooser", default=DEFAULT_CHOOSER,
                               type_=str)
JM_BONDLESS_ALLOWANCE = _config_var("JM_BONDLESS_ALLOWANCE", "bondless_makers_allowance",
                                    default=str(BONDLESS_MAKERS_ALLOWANCE), type_=str)
JM_FALLBACK_FEE_RATE = _config_var("JM_FALLBACK_FEE_RATE", "fallback_fee_rate", default=2000,
                                   type_=int)
"""sat/kvB, used only when Electrum has no fee estimate (regtest has none)."""
JM_MAX_FEE_RATE = _config_var("JM_MAX_FEE_RATE", "max_fee_rate", default=DEFAULT_MAX_FEERATE,
                              type_=int)
"""sat/kvB: the highest fee rate a coinjoin may use (the server's estimate or the fallback); a
higher one stops the coinjoin with an error naming this setting (default 100 sat/vB)."""
JM_ORDERBOOK_WAIT = _config_var("JM_ORDERBOOK_WAIT", "orderbook_wait", default=60, type_=int)
"""seconds to collect offers after ``!orderbook`` (Ref ``maker_timeout_sec``)."""
JM_MAKER_TIMEOUT = _config_var("JM_MAKER_TIMEOUT", "maker_timeout", default=60, type_=int)
"""seconds to wait for all ``!ioauth``/``!sig`` of a stage (Ref ``maker_timeout_sec``)."""
JM_CHANNELS_TIMEOUT = _config_var("JM_CHANNELS_TIMEOUT", "channels_timeout", default=90, type_=int)
"""seconds a coinjoin or an orderbook look waits for the daemon's message channels to come up
before it gives up (a directory over Tor can take up to 60 s per attempt); a report that they
cannot come up at all (no Tor, every directory refused) ends the wait sooner."""


@dataclass(frozen=True)
class DaemonSettings:
    """How to find or start jmdaemon (read from the ConfigVars above)."""
    host: str
    port: int
    binary: Optional[str]
    datadir: Optional[str]
    autostart: bool
    in_process: bool
    electrum_dir: Optional[str]
    authentication: bool = True

    @classmethod
    def from_config(cls, config: Any) -> "DaemonSettings":
        try:
            electrum_dir = config.electrum_path_root()
        except Exception:
            electrum_dir = None
        datadir = config.JM_DAEMON_DATADIR
        return cls(host=str(config.JM_DAEMON_HOST), port=int(config.JM_DAEMON_PORT),
                   binary=config.JM_DAEMON_BINARY or None,
                   datadir=os.path.expanduser(datadir) if datadir else None,
                   autostart=bool(config.JM_DAEMON_AUTOSTART),
                   in_process=bool(config.JM_DAEMON_IN_PROCESS), electrum_dir=electrum_dir,
                   authentication=bool(config.JM_DAEMON_AUTHENTICATION))


def settings_dict(config: Any) -> dict[str, Any]:
    """Every setting by name (JSON-able), as ``joinmarket_status`` shows them."""
    return {key: getattr(config, attr) for key, attr in CONFIG_VARS.items()}


def set_settings(config: Any, values: dict[str, Any]) -> None:
    """Write settings by name through their ConfigVars (type-checked; None unsets)."""
    for key, value in values.items():
        setattr(config, CONFIG_VARS[key], value)
