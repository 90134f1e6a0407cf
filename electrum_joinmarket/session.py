"""One wallet's JoinMarket session: its plugin storage, PoDLE commitments and what runs on it.

Invariants:

* **Per-wallet state** lives in the wallet file (``BasePlugin.get_storage(wallet)``, key
  ``plugin_data.joinmarket``) and moves with it.  Electrum prunes plugin data of plugins absent
  from the config when a wallet is closed (``WalletDB.prune_uninstalled_plugin_data``): the key
  ``plugins.joinmarket`` exists as soon as the plugin was ever enabled, so the data survives
  disabling too.  Used PoDLE commitments are written to disk on every change
  (``CommitmentStore(on_change=wallet.save_db)``), before they are sent (invariant 2).
* Coins a taker froze and never released (Electrum killed mid-coinjoin) are released when the
  session opens (invariant 2 across a crash).
* A coinjoin the taker signed and gave out in a run that then reported failure is recorded in
  the history when the wallet sees it later, while the session is open or when it opens
  (:mod:`electrum_joinmarket.taker.signed`).
* One role at a time: ``role`` is None, :attr:`Role.TAKER` or :attr:`Role.MAKER`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from electrum_joinmarket.protocol.commitments import CommitmentStore
from electrum_joinmarket.stages import Role, SessionState

if TYPE_CHECKING:  # pragma: no cover
    from electrum.wallet import Abstract_Wallet

    from electrum_joinmarket.plugin import JoinMarketPlugin

__all__ = ["WalletSession"]


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
        from electrum_joinmarket.depths.record import DepthRecord
        self.depths = DepthRecord(wallet, self.storage, save=self._save)   # JoinMarket depths
        self.schedules: Any = None               # ScheduleService, made by the runner
        from electrum_joinmarket.taker.taker import release_stale_freezes
        release_stale_freezes(wallet, self.storage)   # invariant 2 across a crash
        self.role: Optional[Role] = None
        self.state: str = SessionState.IDLE      # a SessionState or the taker's TakerStage
        self.taker: Any = None                   # the running Taker, if any
        self.maker: Any = None                   # the running Maker, if any
        self.job: Any = None                     # the wallet's last coinjoin job (jobs.Job)
        self.last_progress: Optional[dict] = None
        self.autostart_note: Optional[str] = None   # why the maker's auto-start waits/failed
        self.closed = False
        from electrum_joinmarket.taker.signed import SignedTxWatch
        self.signed_watch = SignedTxWatch(wallet, self.storage, self._save, self._record_late)
        self.signed_watch.start()

    def _record_late(self, entry: dict) -> None:
        """A history entry for a signed coinjoin that went out after its run reported failure."""
        from electrum_joinmarket.runner import HISTORY_KEY, HISTORY_LIMIT
        history = list(self.storage.get(HISTORY_KEY, []))
        history.append(entry)
        self.storage[HISTORY_KEY] = history[-HISTORY_LIMIT:]
        self._save()

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
            "daemon_authenticated": (self.daemon_client.authenticated
                                     if self.daemon_connected else None),
            "used_commitments": len(self.commitments.used()),
            "depth_balances": self.depths.balances(),
            "schedule_running": (self.schedules.running_id
                                 if self.schedules is not None and self.schedules.busy else None),
            "progress": self.last_progress,
            "maker": self.maker.status() if self.maker is not None else None,
        }

    def close(self) -> None:
        """Forget the session (the wallet's stored data stays in the wallet file)."""
        self.closed = True
        self.signed_watch.stop()
        if self.schedules is not None:
            self.schedules.stop()
