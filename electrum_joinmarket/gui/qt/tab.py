"""The JoinMarket tab of Electrum's main window (one per wallet window).

Thin over :class:`electrum_joinmarket.runner.Runner`, and made of panels (``gui/qt/*_panel.py``):
the status line, the coinjoin form, the progress of a run, and the orderbook, history and maker
views. This class owns what they share: the plugin and window, the Qt-thread bridge (one queued
``pyqtSignal``: results, progress events and the pre-signing confirmation come back to the Qt
thread through it, so the Qt thread never blocks), :meth:`run_async` for coroutines on
Electrum's asyncio loop, the one-second timer, and the coinjoin run itself (start, confirm,
cancel, outcome). Errors are shown with Electrum's message boxes (``window.show_error``), never
as tracebacks.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from functools import partial
from typing import Any, Callable, Optional

from electrum.i18n import _
from electrum.util import get_asyncio_loop
from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QHBoxLayout, QTabWidget, QVBoxLayout, QWidget

from electrum_joinmarket.gui import model
from electrum_joinmarket.gui.qt.common import Bridge, friendly_error, guarded
from electrum_joinmarket.gui.qt.form_panel import FormPanel
from electrum_joinmarket.gui.qt.history_panel import HistoryPanel
from electrum_joinmarket.gui.qt.maker_panel import MakerPanel
from electrum_joinmarket.gui.qt.orderbook_panel import OrderbookPanel
from electrum_joinmarket.gui.qt.progress_panel import ProgressPanel
from electrum_joinmarket.gui.qt.status_panel import StatusPanel
from electrum_joinmarket.logs import get_logger
from electrum_joinmarket.stages import OutcomeStatus

log = get_logger(__name__)

__all__ = ["JoinMarketTab", "friendly_error"]


class JoinMarketTab(QWidget):
    """See module docstring. Panels: :attr:`status`, :attr:`form`, :attr:`progress`,
    :attr:`orderbook`, :attr:`history`, :attr:`maker` (the last three in :attr:`inner_tabs`)."""

    def __init__(self, plugin: Any, window: Any):
        super().__init__()
        self.plugin = plugin
        self.main_window = window
        self.wallet = window.wallet
        self.setObjectName("joinmarket_tab")
        self.bridge = Bridge()
        self._closed = False
        self._futures: set = set()
        self._cj_future: Optional[concurrent.futures.Future] = None
        self._tick_count = 0
        self.last_txid: Optional[str] = None
        self.last_outcome: Optional[dict] = None
        self.last_breakdown: Optional[dict] = None

        self.status = StatusPanel(self)
        self.form = FormPanel(self)
        self.progress = ProgressPanel(self)
        self.orderbook = OrderbookPanel(self)
        self.history = HistoryPanel(self)
        self.maker = MakerPanel(self)
        root = QVBoxLayout(self)
        root.addWidget(self.status)
        top = QHBoxLayout()
        top.addWidget(self.form, 1)
        top.addWidget(self.progress, 1)
        root.addLayout(top)
        self.inner_tabs = QTabWidget()
        self.inner_tabs.addTab(self.orderbook, _("Orderbook"))
        self.inner_tabs.addTab(self.history, _("History"))
        self.inner_tabs.addTab(self.maker, _("Maker (earn fees)"))
        root.addWidget(self.inner_tabs, 1)

        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        self.status.refresh()
        self.history.refresh()
        self.maker.refresh()

    # ================================================================== plumbing
    def run_async(self, coro: Any, on_ok: Callable[[Any], None],
                  on_err: Optional[Callable[[BaseException], None]] = None) -> concurrent.futures.Future:
        """Run ``coro`` on Electrum's loop; call ``on_ok(result)``/``on_err(exc)`` on the Qt thread."""
        fut = asyncio.run_coroutine_threadsafe(coro, get_asyncio_loop())
        self._futures.add(fut)
        fut.add_done_callback(lambda f: self.bridge.call.emit(partial(self._settle, f, on_ok, on_err)))
        return fut

    def _settle(self, fut: concurrent.futures.Future, on_ok: Callable, on_err: Optional[Callable]) -> None:
        self._futures.discard(fut)
        if self._closed:
            return
        try:
            result = fut.result()
        except BaseException as exc:
            (on_err or self._show_exc)(exc)
            return
        on_ok(result)

    def _show_exc(self, exc: BaseException) -> None:
        self.show_error(friendly_error(exc))

    def show_error(self, msg: str) -> None:
        self.main_window.show_error(msg, parent=self.main_window)

    def show_message(self, msg: str) -> None:
        self.main_window.show_message(msg, parent=self.main_window)

    def clean_up(self) -> None:
        """The window closes or the plugin is disabled: stop timers, drop pending callbacks."""
        self._closed = True
        self.timer.stop()
        for fut in list(self._futures):
            if fut is not self._cj_future:
                fut.cancel()
        self._futures.clear()

    @guarded
    def _tick(self) -> None:
        self.progress.tick()
        self._tick_count += 1
        if self._tick_count % 3 == 0:
            self.maker.refresh()
            self.form.update_coins_label()
        if self._tick_count % 15 == 0:
            self.status.refresh()

    def ask_password(self) -> tuple[bool, Optional[str]]:
        """(go on, password): Electrum's password dialog until the password is right or the user
        cancels; (True, None) for a wallet without one."""
        if not self.wallet.has_keystore_encryption():
            return True, None
        while True:
            pw = self.wallet.get_unlocked_password() or self.main_window.password_dialog(
                parent=self.main_window, msg=_("Enter your password to sign the coinjoin"))
            if pw is None:
                return False, None
            try:
                self.wallet.check_password(pw)
                return True, pw
            except Exception as exc:
                self.show_error(str(exc) or _("Wrong password"))

    # ================================================================== the coinjoin
    @guarded
    def start_coinjoin(self) -> None:
        if self._cj_future is not None and not self._cj_future.done():
            self.show_error(_("A coinjoin is already running in this wallet."))
            return
        try:
            overrides = model.check_form(self.form.form_input(), self.wallet)
        except model.FormError as exc:
            self.show_error(str(exc))
            return
        runner = self.plugin.runner
        amount, dest = overrides.pop("amount"), overrides.pop("destination")
        try:
            config = runner.taker_config(amount, dest, **overrides)
            config.check()
        except Exception as exc:
            self._show_exc(exc)
            return
        allow_mismatch = False
        from electrum_joinmarket.tx.privacy import destination_type_warning
        warning = destination_type_warning(dest, getattr(self.wallet, "txin_type", "p2wpkh"))
        if warning:
            if not self.main_window.question(
                    _("Warning: {}.").format(warning) + "\n\n"
                    + _("Use an address of your wallet's type instead, unless you accept that "
                        "your output stands out. Go ahead anyway?"),
                    title=_("Your output would stand out")):
                return
            allow_mismatch = True
        ok, password = self.ask_password()
        if not ok:
            return
        self.progress.reset()
        self.last_txid = self.last_outcome = self.last_breakdown = None
        self.form.set_running(True)
        self.progress.started(amount, dest)
        try:
            fut = runner.start_coinjoin_task(self.wallet, config, password,
                                             allow_script_mismatch=allow_mismatch,
                                             progress=self._progress_from_loop,
                                             confirm=self._confirm_from_loop,
                                             depth=self.form.chosen_depth())
        except Exception as exc:
            self._finish_ui()
            self._show_exc(exc)
            return
        self._cj_future = fut
        self._futures.add(fut)
        fut.add_done_callback(lambda f: self.bridge.call.emit(partial(self._cj_done, f)))

    # -- called on Electrum's loop thread ---------------------------------------------------
    def _progress_from_loop(self, event: dict) -> None:
        self.bridge.call.emit(partial(self.on_progress, dict(event)))

    def _confirm_from_loop(self, breakdown: dict) -> Any:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future = loop.create_future()

        def ask() -> None:                                    # Qt thread
            ok = False
            try:
                ok = (not self._closed) and self.confirm(breakdown)
            finally:
                def settle(ok: bool = bool(ok)) -> None:
                    if not answer.done():
                        answer.set_result(ok)
                loop.call_soon_threadsafe(settle)
        self.bridge.call.emit(ask)

        async def wait() -> bool:
            return await answer
        return wait()

    # -- Qt thread --------------------------------------------------------------------------
    def confirm(self, breakdown: dict) -> bool:
        """The pre-signing confirmation (Qt thread). True = sign and send."""
        self.last_breakdown = dict(breakdown)
        return self.progress.confirm(breakdown)

    def on_progress(self, event: dict) -> None:
        if self._closed:
            return
        self.progress.on_progress(event)

    def _cj_done(self, fut: concurrent.futures.Future) -> None:
        self._futures.discard(fut)
        if self._closed:
            return
        self._finish_ui()
        try:
            outcome = fut.result()
        except BaseException as exc:
            msg = friendly_error(exc)
            self.progress.not_started(msg)
            self.show_error(msg)
            return
        o = outcome.to_dict() if hasattr(outcome, "to_dict") else dict(outcome)
        self.last_outcome = o
        self.history.refresh()
        if o.get("status") == OutcomeStatus.SUCCESS:
            self.last_txid = o.get("txid")
        failure = self.progress.show_outcome(o)
        if failure:
            self.show_error(failure)

    def _finish_ui(self) -> None:
        self._cj_future = None
        self.progress.finished()
        self.form.set_running(False)

    @guarded
    def cancel_coinjoin(self) -> None:
        runner = self.plugin.runner
        get_asyncio_loop().call_soon_threadsafe(runner.cancel, self.wallet)
        self.progress.cancelling()

    # ================================================================== links into Electrum
    @guarded
    def show_tx(self, txid: Optional[str]) -> None:
        if not txid:
            return
        tx = self.wallet.db.get_transaction(txid)
        if tx is None:
            self.show_error(_("Transaction {} is not in this wallet (yet).").format(txid))
            return
        self.main_window.show_transaction(tx)

    @guarded
    def show_in_history(self) -> None:
        hl = getattr(self.main_window, "history_list", None)
        if hl is None:
            return
        tabs = self.main_window.tabs
        for i in range(tabs.count()):
            if tabs.widget(i).isAncestorOf(hl):
                tabs.setCurrentIndex(i)
                break
        if self.last_txid:
            try:
                hl.filter_text = self.last_txid           # best effort: Electrum's filter box
                hl.filter()
            except Exception:
                pass
