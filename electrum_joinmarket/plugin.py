"""The GUI-agnostic core of the JoinMarket plugin: settings, per-wallet sessions, hooks.

``qt.py`` and ``cmdline.py`` subclass :class:`JoinMarketPlugin`; everything that is not drawing
widgets lives here or in the modules it uses.

Invariants:

* **Settings** are Electrum config keys ``plugins.joinmarket.*`` declared as ``ConfigVar``s on
  ``SimpleConfig`` (so ``setconfig``/the GUI know their types and defaults).  The coinjoin fee
  limits have *no* default: :meth:`JoinMarketPlugin.fee_limits` raises :class:`FeeLimitsUnset`
  until the user sets both (settings or command arguments), so an unset limit never means "pay
  any fee" (docs/architecture.md invariant 1; Ref prompts the user in the same situation). They
  are parsed by :func:`electrum_joinmarket.market.limits.parse_fee_limits` only.
* **Per-wallet state** lives in the wallet file (``BasePlugin.get_storage(wallet)``, key
  ``plugin_data.joinmarket``) and moves with it.  Electrum prunes plugin data of plugins absent
  from the config when a wallet is closed (``WalletDB.prune_uninstalled_plugin_data``): the key
  ``plugins.joinmarket`` exists as soon as the plugin was ever enabled, so the data survives
  disabling too.  Used PoDLE commitments are written to disk on every change
  (``CommitmentStore(on_change=wallet.save_db)``), before they are sent (invariant 2).
* **One session per loaded wallet**, created on ``daemon_wallet_loaded``/``load_wallet`` and
  dropped on ``close_wallet`` or when the daemon no longer holds the wallet.  Hooks may run on
  any thread: the session table is guarded by a lock.
* Nothing here touches the network at import or construction time.
"""
from __future__ import annotations

import threading
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Optional

from electrum.plugin import BasePlugin, hook
from electrum.simple_config import ConfigVar, SimpleConfig

from jmcore.constants import DEFAULT_DAEMON_PORT

from electrum_joinmarket.protocol.commitments import CommitmentStore
from electrum_joinmarket.stages import Role, SessionState
from electrum_joinmarket.market.limits import FeeLimitError, FeeLimits, FeeLimitsUnset, parse_fee_limits
from electrum_joinmarket.market.orders import BONDLESS_MAKERS_ALLOWANCE, CHOOSERS, DEFAULT_CHOOSER

if TYPE_CHECKING:  # pragma: no cover
    from electrum.wallet import Abstract_Wallet

__all__ = ["PLUGIN_NAME", "PLUGIN_VERSION", "FeeLimitsUnset", "WalletSession", "JoinMarketPlugin"]

PLUGIN_NAME = "joinmarket"
PLUGIN_VERSION = "0.1.0"


def _config_var(attr: str, key: str, **kwargs: Any) -> ConfigVar:
    """Declare ``SimpleConfig.<attr>`` once (Electrum asserts on a duplicate key, and this module
    must stay importable twice-safe, e.g. after a plugin reload)."""
    existing = SimpleConfig.__dict__.get(attr)
    if isinstance(existing, ConfigVar):
        return existing
    var = ConfigVar(f"plugins.{PLUGIN_NAME}.{key}", plugin=PLUGIN_NAME, **kwargs)
    setattr(SimpleConfig, attr, var)
    return var


# --- settings ---------------------------------------------------------------------------------
JM_DAEMON_HOST = _config_var("JM_DAEMON_HOST", "daemon_host", default="127.0.0.1", type_=str)
JM_DAEMON_PORT = _config_var("JM_DAEMON_PORT", "daemon_port", default=DEFAULT_DAEMON_PORT, type_=int)
JM_MAX_CJ_FEE_ABS = _config_var("JM_MAX_CJ_FEE_ABS", "max_cj_fee_abs", default=None)
"""sats; no default on purpose (see module docstring)."""
JM_MAX_CJ_FEE_REL = _config_var("JM_MAX_CJ_FEE_REL", "max_cj_fee_rel", default=None)
"""fraction of the amount, e.g. "0.002" (stored as a string: no float rounding)."""
JM_COUNTERPARTIES = _config_var("JM_COUNTERPARTIES", "counterparties", default=None)
"""number of makers; None = random 8–10 per coinjoin (Ref/NG default)."""
JM_MINIMUM_MAKERS = _config_var("JM_MINIMUM_MAKERS", "minimum_makers", default=4, type_=int)
JM_ORDER_CHOOSER = _config_var("JM_ORDER_CHOOSER", "order_chooser", default=DEFAULT_CHOOSER, type_=str)
JM_BONDLESS_ALLOWANCE = _config_var("JM_BONDLESS_ALLOWANCE", "bondless_makers_allowance",
                                    default=str(BONDLESS_MAKERS_ALLOWANCE), type_=str)
JM_FALLBACK_FEE_RATE = _config_var("JM_FALLBACK_FEE_RATE", "fallback_fee_rate", default=2000, type_=int)
"""sat/kvB, used only when Electrum has no fee estimate (regtest has none)."""
JM_ORDERBOOK_WAIT = _config_var("JM_ORDERBOOK_WAIT", "orderbook_wait", default=60, type_=int)
"""seconds to collect offers after ``!orderbook`` (Ref ``maker_timeout_sec``)."""
JM_MAKER_TIMEOUT = _config_var("JM_MAKER_TIMEOUT", "maker_timeout", default=60, type_=int)
"""seconds to wait for all ``!ioauth``/``!sig`` of a stage (Ref ``maker_timeout_sec``)."""
JM_DAEMON_BINARY = _config_var("JM_DAEMON_BINARY", "daemon_binary", default=None)
"""path of the jmdaemon binary to start when none runs (see daemon_link for the lookup order)."""
JM_DAEMON_DATADIR = _config_var("JM_DAEMON_DATADIR", "daemon_datadir", default=None)
JM_DAEMON_AUTOSTART = _config_var("JM_DAEMON_AUTOSTART", "daemon_autostart", default=True, type_=bool)
JM_DAEMON_IN_PROCESS = _config_var("JM_DAEMON_IN_PROCESS", "daemon_in_process", default=True,
                                   type_=bool)
JM_CHANNELS = _config_var("JM_CHANNELS", "channels", default=None)
"""JSON list of message channel configs passed to the daemon (JMInit ``chan_configs``), e.g.
``[{"type": "onion", "directory_nodes": "…onion:5222"}]``; unset = the daemon's defaults."""


class WalletSession:
    """JoinMarket state of one loaded wallet.

    ``storage`` is the wallet's plugin storage (persisted in the wallet file); ``commitments`` the
    PoDLE commitment store over it, saving the wallet DB on every change.  ``role``/``state``
    are set by the runner while a taker or maker runs (:class:`~electrum_joinmarket.stages.Role`,
    :class:`~electrum_joinmarket.stages.SessionState` or the taker's last
    :class:`~electrum_joinmarket.stages.TakerStage`; None/``idle`` otherwise).
    """

    def __init__(self, plugin: "JoinMarketPlugin", wallet: "Abstract_Wallet"):
        self.plugin = plugin
        self.wallet = wallet
        self.storage = plugin.get_storage(wallet)
        self.commitments = CommitmentStore(self.storage, on_change=self._save)
        from electrum_joinmarket.taker.taker import release_stale_freezes
        release_stale_freezes(wallet, self.storage)   # invariant 2 across a crash
        self.role: Optional[Role] = None
        self.state: str = SessionState.IDLE      # a SessionState or the taker's TakerStage
        self.taker: Any = None                   # the running Taker, if any
        self.maker: Any = None                   # the running Maker, if any
        self.task: Any = None                    # asyncio task of a running coinjoin
        self.last_progress: Optional[dict] = None
        self.closed = False

    def _save(self) -> None:
        self.wallet.save_db()

    @property
    def wallet_name(self) -> str:
        return self.wallet.basename()

    @property
    def daemon_client(self) -> Any:
        """The AMP connection to jmdaemon of what this session runs (taker or maker), if any."""
        for running in (self.taker, self.maker):
            client = getattr(running, "client", None)
            if client is not None:
                return client
        return None

    @property
    def daemon_connected(self) -> bool:
        """True while this session's taker or maker holds an open connection to the daemon."""
        client = self.daemon_client
        return client is not None and client.connected

    def status(self) -> dict:
        """A JSON-able summary (no secrets, no network)."""
        return {
            "wallet": self.wallet_name,
            "txin_type": getattr(self.wallet, "txin_type", None),
            "role": self.role,
            "state": self.state,
            "daemon_connected": self.daemon_connected,
            "used_commitments": len(self.commitments.used()),
            "progress": self.last_progress,
            "maker": self.maker.status() if self.maker is not None else None,
        }

    def close(self) -> None:
        """Forget the session (the wallet's stored data stays in the wallet file)."""
        self.closed = True


class JoinMarketPlugin(BasePlugin):
    """Core plugin object; Electrum creates one per GUI (``qt.Plugin`` / ``cmdline.Plugin``)."""

    def __init__(self, parent: Any, config: SimpleConfig, name: str):
        super().__init__(parent, config, name)
        self._lock = threading.RLock()
        self._sessions: dict[int, WalletSession] = {}   # id(wallet) -> session
        self._daemon: Any = None
        self._runner: Any = None

    @property
    def runner(self) -> Any:
        """The :class:`electrum_joinmarket.runner.Runner` (created on first use)."""
        if self._runner is None:
            from electrum_joinmarket.runner import Runner
            self._runner = Runner(self)
        return self._runner

    # -- settings ---------------------------------------------------------------------------
    @property
    def daemon_address(self) -> tuple[str, int]:
        return (self.config.JM_DAEMON_HOST, self.config.JM_DAEMON_PORT)

    def fee_limits(self, max_abs: Any = None, max_rel: Any = None) -> FeeLimits:
        """The fee limits of a coinjoin: ``max_abs``/``max_rel`` (typed text or numbers) where
        given, else the settings. Raises :class:`FeeLimitsUnset` unless both are known,
        :class:`FeeLimitError` if one is malformed (both say what to do)."""
        c = self.config
        return parse_fee_limits(c.JM_MAX_CJ_FEE_ABS if max_abs is None else max_abs,
                                c.JM_MAX_CJ_FEE_REL if max_rel is None else max_rel)

    def order_chooser_name(self) -> str:
        name = self.config.JM_ORDER_CHOOSER
        if name not in CHOOSERS:
            raise ValueError(f"plugins.joinmarket.order_chooser {name!r} is not one of {sorted(CHOOSERS)}")
        return name

    def bondless_allowance(self) -> float:
        value = float(Decimal(str(self.config.JM_BONDLESS_ALLOWANCE)))
        if not 0.0 <= value <= 1.0:
            raise ValueError("plugins.joinmarket.bondless_makers_allowance must be in [0, 1]")
        return value

    def settings(self) -> dict:
        """Current settings (JSON-able)."""
        c = self.config
        return {
            "daemon_host": c.JM_DAEMON_HOST, "daemon_port": c.JM_DAEMON_PORT,
            "max_cj_fee_abs": c.JM_MAX_CJ_FEE_ABS, "max_cj_fee_rel": c.JM_MAX_CJ_FEE_REL,
            "counterparties": c.JM_COUNTERPARTIES, "minimum_makers": c.JM_MINIMUM_MAKERS,
            "order_chooser": c.JM_ORDER_CHOOSER,
            "bondless_makers_allowance": c.JM_BONDLESS_ALLOWANCE,
            "fallback_fee_rate": c.JM_FALLBACK_FEE_RATE,
            "orderbook_wait": c.JM_ORDERBOOK_WAIT, "maker_timeout": c.JM_MAKER_TIMEOUT,
            "channels": c.JM_CHANNELS, "daemon_binary": c.JM_DAEMON_BINARY,
            "daemon_datadir": c.JM_DAEMON_DATADIR, "daemon_autostart": c.JM_DAEMON_AUTOSTART,
            "daemon_in_process": c.JM_DAEMON_IN_PROCESS,
        }

    # -- sessions ---------------------------------------------------------------------------
    def session_for(self, wallet: "Abstract_Wallet", *, create: bool = True) -> Optional[WalletSession]:
        """The session of ``wallet`` (created on first use unless ``create=False``)."""
        with self._lock:
            self._prune_stale()
            s = self._sessions.get(id(wallet))
            if s is not None and s.wallet is wallet:
                return s
            if not create:
                return None
            s = WalletSession(self, wallet)
            self._sessions[id(wallet)] = s
            self.logger.info(f"JoinMarket session opened for wallet {s.wallet_name}")
            return s

    def sessions(self) -> list[WalletSession]:
        with self._lock:
            self._prune_stale()
            return list(self._sessions.values())

    def drop_session(self, wallet: "Abstract_Wallet") -> None:
        with self._lock:
            s = self._sessions.get(id(wallet))
            if s is not None and s.wallet is wallet:
                del self._sessions[id(wallet)]
                s.close()
                self.logger.info(f"JoinMarket session closed for wallet {s.wallet_name}")

    def _prune_stale(self) -> None:
        """Drop sessions of wallets the daemon no longer holds (the daemon has no close hook)."""
        daemon = self._daemon
        if daemon is None:
            return
        try:
            live = {id(w) for w in daemon.get_wallets().values()}
        except Exception:
            return
        for key in [k for k in self._sessions if k not in live]:
            s = self._sessions.pop(key)
            s.close()

    # -- hooks ------------------------------------------------------------------------------
    @hook
    def daemon_wallet_loaded(self, daemon: Any, wallet: "Abstract_Wallet") -> None:
        self._daemon = daemon
        self.session_for(wallet)

    @hook
    def load_wallet(self, wallet: "Abstract_Wallet", window: Any) -> None:
        self.session_for(wallet)

    @hook
    def close_wallet(self, wallet: "Abstract_Wallet") -> None:
        self.drop_session(wallet)

    def on_close(self) -> None:
        if self._runner is not None:
            from electrum.util import get_asyncio_loop
            import asyncio
            try:
                asyncio.run_coroutine_threadsafe(self._runner.stop(), get_asyncio_loop())
            except Exception:
                self.logger.exception("could not stop the JoinMarket runner")
        with self._lock:
            for s in self._sessions.values():
                s.close()
            self._sessions.clear()

    # -- status -----------------------------------------------------------------------------
    def status(self, wallet: Optional["Abstract_Wallet"] = None) -> dict:
        """What ``joinmarket_status`` answers: versions, settings, sessions (no network I/O)."""
        from electrum.version import ELECTRUM_VERSION
        out: dict = {
            "plugin": PLUGIN_NAME, "plugin_version": PLUGIN_VERSION,
            "electrum_version": ELECTRUM_VERSION,
            "enabled": self.is_enabled(),
            "daemon": "%s:%d" % self.daemon_address,
            "settings": self.settings(),
        }
        try:
            self.fee_limits()
            out["fee_limits_set"] = True
        except (FeeLimitsUnset, FeeLimitError):
            out["fee_limits_set"] = False
        if wallet is not None:
            out["session"] = self.session_for(wallet).status()
        else:
            out["sessions"] = [s.status() for s in self.sessions()]
        return out
