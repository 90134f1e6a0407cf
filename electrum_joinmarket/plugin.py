"""The GUI-agnostic core of the JoinMarket plugin: Electrum's ``BasePlugin``, per-wallet
sessions, hooks.

``qt.py`` and ``cmdline.py`` subclass :class:`JoinMarketPlugin`; the settings are declared in
:mod:`electrum_joinmarket.settings`, the commands in :mod:`electrum_joinmarket.commands`, a
wallet's state in :mod:`electrum_joinmarket.session`; the work is done by
:class:`electrum_joinmarket.runner.Runner` and the packages it uses.

Invariants:

* The coinjoin fee limits have *no* default: :meth:`JoinMarketPlugin.fee_limits` raises
  :class:`FeeLimitsUnset` until the user sets both (settings or command arguments), so an unset
  limit never means "pay any fee" (docs/architecture.md invariant 6; Ref prompts the user in the
  same situation). They are parsed by :func:`electrum_joinmarket.market.limits.parse_fee_limits`
  only.
* **One session per loaded wallet**, created on ``daemon_wallet_loaded``/``load_wallet`` and
  dropped on ``close_wallet`` or when the daemon no longer holds the wallet.  Hooks may run on
  any thread: the session table is guarded by a lock.
* Nothing here touches the network at import or construction time.
"""
from __future__ import annotations

import threading
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal, Optional, overload

from electrum.plugin import BasePlugin, hook
from electrum.simple_config import SimpleConfig

from electrum_joinmarket.errors import UserError
from electrum_joinmarket.market.limits import FeeLimitError, FeeLimits, FeeLimitsUnset, parse_fee_limits
from electrum_joinmarket.market.orders import CHOOSERS
from electrum_joinmarket.session import WalletSession
from electrum_joinmarket.settings import PLUGIN_NAME, PLUGIN_VERSION, settings_dict

if TYPE_CHECKING:  # pragma: no cover
    from electrum.wallet import Abstract_Wallet

__all__ = ["PLUGIN_NAME", "PLUGIN_VERSION", "FeeLimitsUnset", "SettingError", "WalletSession",
           "JoinMarketPlugin"]


class SettingError(UserError, ValueError):
    """A setting holds a value the plugin cannot use; the message names it and what is valid."""


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
            raise SettingError(f"plugins.joinmarket.order_chooser {name!r} is not one of "
                               f"{sorted(CHOOSERS)}")
        return str(name)

    def bondless_allowance(self) -> float:
        try:
            value = float(Decimal(str(self.config.JM_BONDLESS_ALLOWANCE)))
        except InvalidOperation:
            value = -1.0
        if not 0.0 <= value <= 1.0:
            raise SettingError("plugins.joinmarket.bondless_makers_allowance must be a number "
                               "in [0, 1], e.g. 0.125")
        return value

    def settings(self) -> dict:
        """Current settings by name (JSON-able)."""
        return settings_dict(self.config)

    # -- sessions ---------------------------------------------------------------------------
    @overload
    def session_for(self, wallet: "Abstract_Wallet") -> WalletSession: ...

    @overload
    def session_for(self, wallet: "Abstract_Wallet", *, create: Literal[True]) -> WalletSession: ...

    @overload
    def session_for(self, wallet: "Abstract_Wallet", *,
                    create: Literal[False]) -> Optional[WalletSession]: ...

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
        self._after_open(s)
        return s

    def _after_open(self, session: WalletSession) -> None:
        """A schedule Electrum was running when it stopped resumes (or is marked interrupted)."""
        if getattr(session.wallet, "network", None) is None:
            return
        try:
            self.runner.resume_schedules(session)
        except Exception:
            self.logger.exception("could not look at the wallet's schedules")

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
        self._autostart(wallet)

    @hook
    def load_wallet(self, wallet: "Abstract_Wallet", window: Any) -> None:
        self.session_for(wallet)
        self._autostart(wallet)

    def _autostart(self, wallet: "Abstract_Wallet") -> None:
        """The wallet's maker, if the user asked for it to start with the wallet (issue 14.11)."""
        try:
            self.runner.maybe_autostart_maker(wallet)
        except Exception:
            self.logger.exception("maker auto-start")

    @hook
    def close_wallet(self, wallet: "Abstract_Wallet") -> None:
        self.drop_session(wallet)

    @hook
    def make_unsigned_transaction(self, wallet: "Abstract_Wallet", tx: Any) -> None:
        """Electrum built a transaction (Send tab, ``payto``…): log when it would merge
        JoinMarket depths. Electrum ignores what this hook returns; the Qt plugin asks the user
        before signing (``tc_sign_wrapper``)."""
        session = self.session_for(wallet, create=False)
        if session is None:
            return
        from electrum_joinmarket.depths.record import MixedDepthsError
        try:
            session.depths.check_tx_inputs(tx)
        except MixedDepthsError as exc:
            self.logger.warning(f"a transaction built by Electrum merges JoinMarket depths "
                                f"{exc.depths} of wallet {session.wallet_name}")
        except Exception:
            self.logger.exception("depth check of an Electrum transaction failed")

    def on_close(self) -> None:
        if self._runner is not None:
            import asyncio

            from electrum.util import get_asyncio_loop
            try:
                asyncio.run_coroutine_threadsafe(self._runner.stop(), get_asyncio_loop())
            except Exception:
                self.logger.exception("could not stop the JoinMarket runner")
        with self._lock:
            for s in self._sessions.values():
                s.close()
            self._sessions.clear()

    # -- status -----------------------------------------------------------------------------
    def _link_status(self) -> dict:
        """The daemon link as ``joinmarket_status`` shows it: whether it is authenticated (the
        setting; False says in words that it is not) and the link's last state, if checked (with
        the pid and log file of a daemon it started and the orphans it stopped)."""
        authenticated = bool(self.config.JM_DAEMON_AUTHENTICATION)
        out: dict = {"authenticated": authenticated}
        if not authenticated:
            out["warning"] = ("the link to the daemon is NOT authenticated "
                              "(plugins.joinmarket.daemon_authentication is off): any program "
                              "answering at the daemon address sees your coinjoins")
        link = self._runner.link if self._runner is not None else None
        if link is not None:
            out["state"] = link.status_dict()      # + where a started daemon logs, orphans stopped
        return out

    def status(self, wallet: Optional["Abstract_Wallet"] = None) -> dict:
        """What ``joinmarket_status`` answers: versions, settings, sessions (no network I/O)."""
        from electrum.version import ELECTRUM_VERSION
        out: dict = {
            "plugin": PLUGIN_NAME, "plugin_version": PLUGIN_VERSION,
            "electrum_version": ELECTRUM_VERSION,
            "enabled": self.is_enabled(),
            "daemon": "%s:%d" % self.daemon_address,
            "daemon_link": self._link_status(),
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
