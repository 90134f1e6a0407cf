"""The JoinMarket tab of Electrum's main window (one per wallet window).

Thin over :class:`electrum_joinmarket.runner.Runner`: every long operation is a coroutine run on
Electrum's asyncio loop (``run_coroutine_threadsafe``); results, progress events and the
pre-signing confirmation come back to the Qt thread through one queued ``pyqtSignal``
(:class:`_Bridge`), so the Qt thread never blocks.  Errors are shown with Electrum's message
boxes (``window.show_error``), never as tracebacks.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from functools import partial
from typing import Any, Callable, Optional

from PyQt6.QtCore import QObject, Qt, QTimer, pyqtSignal
from PyQt6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout,
                             QGridLayout, QGroupBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit,
                             QPlainTextEdit, QPushButton, QSpinBox, QTableWidget,
                             QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget)

from electrum.gui.qt.amountedit import BTCAmountEdit
from electrum.i18n import _
from electrum.util import get_asyncio_loop

from electrum_joinmarket.gui import model as model
from electrum_joinmarket.logs import get_logger
from electrum_joinmarket.stages import TERMINAL_STAGES, OutcomeStatus, Role, TakerStage
from electrum_joinmarket.gui.qt.dialogs import ConfirmDialog, SettingsDialog

log = get_logger(__name__)

__all__ = ["JoinMarketTab", "friendly_error"]

ORDERBOOK_COLUMNS = [_("Maker"), _("Type"), _("Min size"), _("Max size"), _("Offer fee"),
                     _("Fee for amount"), _("Fee %"), _("Miner fee contrib."), _("Bond value")]
HISTORY_COLUMNS = [_("Date"), _("Status"), _("Amount"), _("Makers"), _("Maker fees"),
                   _("Miner fee"), _("Total cost"), _("Transaction / message")]


def friendly_error(exc: BaseException) -> str:
    """One sentence for the user, chosen by the exception's type (never by its text); the
    traceback of a bug goes to Electrum's log only."""
    from electrum.util import UserFacingException

    from electrum_joinmarket.errors import Failure, JoinMarketError, failure_of
    from electrum_joinmarket.link.client import DaemonError
    from electrum_joinmarket.market.limits import FeeLimitsUnset
    if failure_of(exc) == Failure.CANCELLED:
        return _("Cancelled.")
    if isinstance(exc, FeeLimitsUnset):
        return _("Set both coinjoin fee limits first (in the form or JoinMarket settings).")
    if isinstance(exc, DaemonError):
        return _("The JoinMarket daemon: {}").format(exc)
    if isinstance(exc, (UserFacingException, JoinMarketError)):
        return str(exc)                  # our messages say what to do
    if isinstance(exc, (ConnectionError, OSError, asyncio.TimeoutError, TimeoutError)):
        return _("Could not reach the JoinMarket daemon ({}). Check the daemon address in "
                 "JoinMarket settings or press 'Start daemon'.").format(exc or type(exc).__name__)
    if isinstance(exc, ValueError):
        return str(exc)
    log.error("JoinMarket tab: unexpected error", exc_info=exc)
    return _("Unexpected error: {}. Details are in Electrum's log.").format(exc or type(exc).__name__)


def _guarded(fn: Callable) -> Callable:
    """A Qt slot that never lets an exception escape (PyQt6 would abort Electrum): the user gets
    an Electrum error box, the traceback goes to the log."""
    import functools
    import inspect
    params = list(inspect.signature(fn).parameters.values())[1:]
    arity = None if any(p.kind == p.VAR_POSITIONAL for p in params) else len(params)

    @functools.wraps(fn)
    def slot(self: "JoinMarketTab", *args: Any) -> Any:
        try:
            # Qt passes extra signal arguments (e.g. clicked's `checked`): keep what fn takes
            return fn(self, *(args if arity is None else args[:arity]))
        except Exception as exc:         # noqa: BLE001
            log.error("JoinMarket tab: %s failed", fn.__name__, exc_info=exc)
            if not self._closed:
                try:
                    self.show_error(friendly_error(exc))
                except Exception:
                    pass
    return slot


class _Bridge(QObject):
    """Runs callables on the Qt thread, whatever thread emits."""
    call = pyqtSignal(object)

    def __init__(self) -> None:
        super().__init__()
        self.call.connect(self._run, Qt.ConnectionType.QueuedConnection)

    @staticmethod
    def _run(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("JoinMarket tab: callback failed")


class _NumItem(QTableWidgetItem):
    """A table cell that sorts by a number, not by its text."""

    def __init__(self, text: str, key: Any):
        super().__init__(text)
        self.key = key
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, _NumItem):
            a = self.key if self.key is not None else -1
            b = other.key if other.key is not None else -1
            return a < b
        return super().__lt__(other)


def _table(columns: list[str]) -> QTableWidget:
    t = QTableWidget(0, len(columns))
    t.setHorizontalHeaderLabels(columns)
    t.verticalHeader().setVisible(False)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setAlternatingRowColors(True)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.horizontalHeader().setStretchLastSection(True)
    return t


class JoinMarketTab(QWidget):
    """See module docstring."""

    def __init__(self, plugin: Any, window: Any):
        super().__init__()
        self.plugin = plugin
        self.main_window = window
        self.wallet = window.wallet
        self.setObjectName("joinmarket_tab")
        self.bridge = _Bridge()
        self._closed = False
        self._futures: set = set()
        self._cj_future: Optional[concurrent.futures.Future] = None
        self._deadline: Optional[float] = None
        self._book: Optional[dict] = None
        self._bonds: dict[str, float] = {}
        self._channels_up: Optional[bool] = None
        self._channels_live = ""                   # the daemon's latest report, while connecting
        self._tor_text = ""
        self._last_nick: Optional[str] = None
        self._daemon_text = _("JoinMarket daemon not checked yet")
        self._daemon_usable: Optional[bool] = None
        self.last_txid: Optional[str] = None
        self.last_outcome: Optional[dict] = None
        self.last_breakdown: Optional[dict] = None
        self._build()
        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        self.refresh_status()
        self.refresh_history()
        self.refresh_maker()

    # ================================================================== layout
    def _build(self) -> None:
        root = QVBoxLayout(self)

        # -- status row
        status = QHBoxLayout()
        self.daemon_label = QLabel()
        self.daemon_label.setObjectName("jm_daemon_status")
        self.daemon_label.setWordWrap(True)
        self.channels_label = QLabel()
        self.channels_label.setObjectName("jm_channels_status")
        self.channels_label.setWordWrap(True)
        self.tor_label = QLabel()
        self.tor_label.setObjectName("jm_tor_status")
        self.tor_label.setWordWrap(True)
        self.nick_label = QLabel()
        self.start_daemon_button = QPushButton(_("Start daemon"))
        self.start_daemon_button.clicked.connect(self.start_daemon)
        self.start_daemon_button.setVisible(False)
        self.settings_button = QPushButton(_("Settings…"))
        self.settings_button.clicked.connect(self.show_settings)
        col = QVBoxLayout()
        col.addWidget(self.daemon_label)
        line = QHBoxLayout()
        line.addWidget(self.channels_label)
        line.addSpacing(20)
        line.addWidget(self.nick_label)
        line.addStretch(1)
        col.addLayout(line)
        col.addWidget(self.tor_label)
        status.addLayout(col, 1)
        status.addWidget(self.start_daemon_button)
        status.addWidget(self.settings_button)
        root.addLayout(status)

        top = QHBoxLayout()
        top.addWidget(self._build_form(), 1)
        top.addWidget(self._build_progress(), 1)
        root.addLayout(top)

        self.inner_tabs = QTabWidget()
        self.inner_tabs.addTab(self._build_orderbook(), _("Orderbook"))
        self.inner_tabs.addTab(self._build_history(), _("History"))
        self.inner_tabs.addTab(self._build_maker(), _("Maker (earn fees)"))
        root.addWidget(self.inner_tabs, 1)

    def _build_form(self) -> QWidget:
        c = self.plugin.config
        box = QGroupBox(_("Send a coinjoin"))
        form = QFormLayout(box)
        self.amount_e = BTCAmountEdit(self.main_window.get_decimal_point)
        self.amount_e.textChanged.connect(self._amount_changed)
        self.sweep_cb = QCheckBox(_("Sweep (send all)"))
        self.sweep_cb.toggled.connect(self._sweep_toggled)
        row = QHBoxLayout()
        row.addWidget(self.amount_e)
        row.addWidget(self.sweep_cb)
        form.addRow(_("Amount"), row)
        self.dest_e = QLineEdit()
        self.dest_e.setPlaceholderText(_("bitcoin address"))
        self.next_unused_button = QPushButton(_("Next unused"))
        self.next_unused_button.setToolTip(_("A fresh receiving address of this wallet"))
        self.next_unused_button.clicked.connect(self.fill_next_unused)
        row = QHBoxLayout()
        row.addWidget(self.dest_e, 1)
        row.addWidget(self.next_unused_button)
        form.addRow(_("Destination"), row)
        self.n_spin = QSpinBox()
        self.n_spin.setRange(1, 20)
        self.n_spin.setValue(int(c.JM_COUNTERPARTIES or 8))
        form.addRow(_("Counterparties"), self.n_spin)
        self.fee_abs_e = QLineEdit("" if c.JM_MAX_CJ_FEE_ABS is None else str(c.JM_MAX_CJ_FEE_ABS))
        self.fee_abs_e.setPlaceholderText(_("sats, e.g. 20000"))
        self.fee_rel_e = QLineEdit("" if c.JM_MAX_CJ_FEE_REL is None else str(c.JM_MAX_CJ_FEE_REL))
        self.fee_rel_e.setPlaceholderText(_("fraction, e.g. 0.004 or 0.4%"))
        row = QHBoxLayout()
        row.addWidget(self.fee_abs_e)
        row.addWidget(QLabel(_("sat or")))
        row.addWidget(self.fee_rel_e)
        form.addRow(_("Max fee per maker"), row)
        self.feerate_spin = QDoubleSpinBox()
        self.feerate_spin.setRange(1, 1000)
        self.feerate_spin.setDecimals(1)
        self.feerate_spin.setSuffix(" sat/vB")
        self.feerate_spin.setValue(max(1.0, int(c.JM_FALLBACK_FEE_RATE) / 1000))
        self.feerate_spin.setToolTip(_("Used when the Electrum server gives no fee estimate; the "
                                       "rate is randomised upward by up to 20% like JoinMarket"))
        form.addRow(_("Miner fee (no estimate)"), self.feerate_spin)
        self.coins_label = QLabel()
        form.addRow(_("Coins"), self.coins_label)
        self.start_button = QPushButton(_("Start coinjoin"))
        self.start_button.setObjectName("jm_start")
        self.start_button.clicked.connect(self.start_coinjoin)
        form.addRow(self.start_button)
        self._update_coins_label()
        return box

    def _build_progress(self) -> QWidget:
        box = QGroupBox(_("Progress"))
        grid = QGridLayout(box)
        self.stage_label = QLabel(_("Idle"))
        self.stage_label.setObjectName("jm_stage")
        self.makers_label = QLabel("")
        self.time_label = QLabel("")
        grid.addWidget(QLabel(_("Stage")), 0, 0)
        grid.addWidget(self.stage_label, 0, 1)
        grid.addWidget(QLabel(_("Makers")), 1, 0)
        grid.addWidget(self.makers_label, 1, 1)
        grid.addWidget(QLabel(_("Time left")), 2, 0)
        grid.addWidget(self.time_label, 2, 1)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(500)
        grid.addWidget(self.log_view, 3, 0, 1, 2)
        self.outcome_label = QLabel("")
        self.outcome_label.setObjectName("jm_outcome")
        self.outcome_label.setWordWrap(True)
        self.outcome_label.setTextFormat(Qt.TextFormat.PlainText)
        self.outcome_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid.addWidget(self.outcome_label, 4, 0, 1, 2)
        self.cancel_button = QPushButton(_("Cancel coinjoin"))
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_coinjoin)
        self.show_tx_button = QPushButton(_("Show transaction"))
        self.show_tx_button.setEnabled(False)
        self.show_tx_button.clicked.connect(lambda: self.show_tx(self.last_txid))
        self.history_button = QPushButton(_("Show in History"))
        self.history_button.setEnabled(False)
        self.history_button.clicked.connect(self.show_in_history)
        row = QHBoxLayout()
        row.addWidget(self.cancel_button)
        row.addStretch(1)
        row.addWidget(self.history_button)
        row.addWidget(self.show_tx_button)
        grid.addLayout(row, 5, 0, 1, 2)
        grid.setRowStretch(3, 1)
        return box

    def _build_orderbook(self) -> QWidget:
        w = QWidget()
        v = QVBoxLayout(w)
        row = QHBoxLayout()
        self.ob_status = QLabel(_("Press Refresh to collect the offers of the JoinMarket network."))
        self.ob_refresh_button = QPushButton(_("Refresh"))
        self.ob_refresh_button.setObjectName("jm_ob_refresh")
        self.ob_refresh_button.clicked.connect(self.refresh_orderbook)
        row.addWidget(self.ob_status, 1)
        row.addWidget(self.ob_refresh_button)
        v.addLayout(row)
        self.ob_table = _table(ORDERBOOK_COLUMNS)
        self.ob_table.setObjectName("jm_orderbook")
        v.addWidget(self.ob_table)
        return w

    def _build_history(self) -> QWidget:
        w = QWidget()
        v = QVBoxLayout(w)
        self.hist_table = _table(HISTORY_COLUMNS)
        self.hist_table.setObjectName("jm_history")
        self.hist_table.cellDoubleClicked.connect(self._history_double_clicked)
        v.addWidget(self.hist_table)
        v.addWidget(QLabel(_("Double-click a coinjoin to open its transaction.")))
        return w

    def _build_maker(self) -> QWidget:
        w = QWidget()
        h = QHBoxLayout(w)
        box = QGroupBox(_("Offer"))
        form = QFormLayout(box)
        self.m_type = QComboBox()
        self.m_type.addItem(_("relative fee"), "reloffer")
        self.m_type.addItem(_("absolute fee"), "absoffer")
        form.addRow(_("Fee type"), self.m_type)
        self.m_cjfee_r = QLineEdit("0.00002")
        form.addRow(_("Relative fee (fraction)"), self.m_cjfee_r)
        self.m_cjfee_a = QSpinBox()
        self.m_cjfee_a.setRange(0, 10_000_000)
        self.m_cjfee_a.setValue(500)
        self.m_cjfee_a.setSuffix(" sat")
        form.addRow(_("Absolute fee"), self.m_cjfee_a)
        self.m_txfee = QSpinBox()
        self.m_txfee.setRange(0, 1_000_000)
        self.m_txfee.setSuffix(" sat")
        form.addRow(_("Miner-fee contribution"), self.m_txfee)
        self.m_minsize = QSpinBox()
        self.m_minsize.setRange(27_300, 2_100_000_000)
        self.m_minsize.setValue(100_000)
        self.m_minsize.setSuffix(" sat")
        form.addRow(_("Minimum coinjoin"), self.m_minsize)
        self.m_start = QPushButton(_("Start maker"))
        self.m_start.clicked.connect(self.start_maker)
        self.m_stop = QPushButton(_("Stop maker"))
        self.m_stop.clicked.connect(self.stop_maker)
        row = QHBoxLayout()
        row.addWidget(self.m_start)
        row.addWidget(self.m_stop)
        form.addRow(row)
        h.addWidget(box, 1)
        box = QGroupBox(_("Status and earnings"))
        v = QVBoxLayout(box)
        self.m_status = QLabel()
        self.m_status.setObjectName("jm_maker_status")
        self.m_status.setWordWrap(True)
        self.m_status.setAlignment(Qt.AlignmentFlag.AlignTop)
        v.addWidget(self.m_status, 1)
        h.addWidget(box, 1)
        return w

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
        except BaseException as exc:      # noqa: BLE001 — shown to the user, never re-raised
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

    # ================================================================== status
    @_guarded
    def _tick(self) -> None:
        if self._deadline is not None:
            left = max(0, int(round(self._deadline - time.time())))
            self.time_label.setText(_("{} s").format(left))
        self._tick_count = getattr(self, "_tick_count", 0) + 1
        if self._tick_count % 3 == 0:
            self.refresh_maker()
            self._update_coins_label()
        if self._tick_count % 15 == 0:
            self.refresh_status()

    def _render_status(self) -> None:
        self.daemon_label.setText(self._daemon_text)
        self.start_daemon_button.setVisible(self._daemon_usable is False)
        if self._channels_live:
            self.channels_label.setText(_("Channels: {}").format(self._channels_live))
        else:
            try:
                chans = model.channel_summary(self.plugin.runner.chan_configs())
            except Exception as exc:
                chans = str(exc)
            up = {True: _("up"), False: _("down"),
                  None: _("not connected yet")}[self._channels_up]
            self.channels_label.setText(_("Channels: {} — {}").format(chans, up))
        self.tor_label.setText(self._tor_text)
        self.tor_label.setVisible(bool(self._tor_text))
        session = self.plugin.session_for(self.wallet)
        nick = None
        if session.taker is not None and getattr(session.taker, "client", None) is not None:
            nick = session.taker.client.nick
        elif session.maker is not None:
            nick = session.maker.nick
        nick = nick or self._last_nick
        self.nick_label.setText(_("Our nick: {}").format(nick or "–"))

    def refresh_tor(self) -> None:
        """Where Tor is (a local check, nothing leaves the machine), for the status line."""
        def done(report: dict) -> None:
            self._tor_text = model.tor_status_text(report)
            self._render_status()
        self.run_async(self.plugin.runner.channel_report(), done, lambda exc: None)

    def channels_report(self, report: Any) -> None:
        """A live report of the daemon's channels while the orderbook is fetched (any thread)."""
        text, up = report.summary(), report.up

        def show() -> None:
            self._channels_live = text
            link = self.plugin.runner.link
            if link is not None:          # the daemon may just have been started for this
                self._daemon_text, self._daemon_usable = link.state.text, link.state.usable
            if not self.ob_refresh_button.isEnabled():
                wait = float(self.plugin.config.JM_ORDERBOOK_WAIT)
                self.ob_status.setText(
                    _("Collecting offers for {:.0f} s…").format(wait) if up else
                    _("Reaching the JoinMarket directory nodes through Tor…"))
            self._render_status()
        self.bridge.call.emit(show)

    @_guarded
    def refresh_status(self) -> None:
        """Probe the daemon (never starts one) and show what we know of channels and nick."""
        from electrum_joinmarket.link.daemon import ProbeResult, probe
        self.refresh_tor()
        runner = self.plugin.runner
        link = runner.link
        host, port = self.plugin.daemon_address
        if link is not None and link.state.usable:
            self._daemon_text, self._daemon_usable = link.state.text, True
            self._render_status()
            return

        def done(res: Any) -> None:
            addr = f"{host}:{port}"
            if res == ProbeResult.AMP:
                self._daemon_text = _("JoinMarket daemon running at {}").format(addr)
                self._daemon_usable = True
            elif res == ProbeResult.NOT_AMP:
                self._daemon_text = _("Something else is listening at {} (not a JoinMarket "
                                      "daemon): change the port in settings").format(addr)
                self._daemon_usable = False
            else:
                self._daemon_text = _("No JoinMarket daemon running at {}").format(addr)
                self._daemon_usable = False
                self._channels_up = None
            self._render_status()

        def failed(exc: BaseException) -> None:
            self._daemon_text, self._daemon_usable = friendly_error(exc), False
            self._render_status()
        self.run_async(probe(host, port, 3.0), done, failed)

    @_guarded
    def start_daemon(self) -> None:
        from electrum_joinmarket.link.daemon import DaemonLink
        runner = self.plugin.runner
        if runner.link is None:
            runner.link = DaemonLink.from_config(self.plugin.config)
        link = runner.link

        async def go() -> Any:
            old = link.autostart
            link.autostart = True          # the user asked for it explicitly
            try:
                return await link.ensure()
            finally:
                link.autostart = old

        self.start_daemon_button.setEnabled(False)
        self._daemon_text = _("Starting the JoinMarket daemon…")
        self._render_status()

        def done(state: Any) -> None:
            self.start_daemon_button.setEnabled(True)
            self._daemon_text, self._daemon_usable = state.text, state.usable
            self._render_status()
            if not state.usable:
                self.show_error(state.text + "\n\n" + _(
                    "Install the jmdaemon binary next to Electrum's data folder, set its path in "
                    "JoinMarket settings, or run it yourself: jmdaemon --host {} --port {}"
                ).format(*self.plugin.daemon_address))

        def failed(exc: BaseException) -> None:
            self.start_daemon_button.setEnabled(True)
            self._show_exc(exc)
        self.run_async(go(), done, failed)

    @_guarded
    def show_settings(self) -> None:
        if SettingsDialog(self.main_window, self.plugin).run():
            c = self.plugin.config
            if c.JM_MAX_CJ_FEE_ABS is not None:
                self.fee_abs_e.setText(str(c.JM_MAX_CJ_FEE_ABS))
            if c.JM_MAX_CJ_FEE_REL is not None:
                self.fee_rel_e.setText(str(c.JM_MAX_CJ_FEE_REL))
            if c.JM_COUNTERPARTIES:
                self.n_spin.setValue(int(c.JM_COUNTERPARTIES))
            self.feerate_spin.setValue(max(1.0, int(c.JM_FALLBACK_FEE_RATE) / 1000))
            self.refresh_status()

    # ================================================================== orderbook
    @_guarded
    def refresh_orderbook(self) -> None:
        wait = float(self.plugin.config.JM_ORDERBOOK_WAIT)
        self.ob_refresh_button.setEnabled(False)
        self.ob_status.setText(_("Starting…"))
        network = self.wallet.network

        async def fetch() -> tuple:
            book = await self.plugin.runner.orderbook(wait, on_report=self.channels_report)
            bonds = await model.bond_values(book.get("fidelitybonds") or [], network)
            return book, bonds

        def done(res: tuple) -> None:
            self.ob_refresh_button.setEnabled(True)
            self._book, self._bonds = res
            self._channels_up = True
            link = self.plugin.runner.link
            if link is not None:
                self._daemon_text, self._daemon_usable = link.state.text, link.state.usable
            self._render_status()
            self.render_orderbook()

        def failed(exc: BaseException) -> None:
            self.ob_refresh_button.setEnabled(True)
            self.ob_status.setText(_("No orderbook: {}").format(friendly_error(exc)))
            link = self.plugin.runner.link
            if link is not None:
                self._daemon_text, self._daemon_usable = link.state.text, link.state.usable
            self._channels_up = False if self._daemon_usable else None
            self._render_status()
            self._show_exc(exc)
        self.run_async(fetch(), done, failed)

    def _form_amount(self) -> Optional[int]:
        if self.sweep_cb.isChecked():
            coins = model.spendable_coins(self.wallet, self.main_window.get_manually_selected_coins())
            return sum(c.value_sats() for c in coins) or None
        amt = self.amount_e.get_amount()
        return int(amt) if amt else None

    @_guarded
    def render_orderbook(self) -> None:
        if self._book is None:
            return
        amount = self._form_amount()
        rows = model.offer_rows(self._book.get("offers") or [], amount, self._bonds)
        t = self.ob_table
        t.setSortingEnabled(False)
        t.setRowCount(len(rows))
        for i, r in enumerate(rows):
            cells = [
                QTableWidgetItem(r.maker),
                QTableWidgetItem(r.kind),
                _NumItem(model.fmt_sats(r.minsize), r.minsize),
                _NumItem(model.fmt_sats(r.maxsize), r.maxsize),
                _NumItem(r.cjfee_text, float(r.cjfee) if r.kind == "relative" else int(r.cjfee)),
                _NumItem(model.fmt_sats(r.fee_sats) if r.fee_sats is not None else "–", r.fee_sats),
                _NumItem(f"{r.fee_percent:.4f} %" if r.fee_percent is not None else "–", r.fee_percent),
                _NumItem(model.fmt_sats(r.txfee), r.txfee),
                _NumItem(f"{r.bond_value:.8g}" if r.bond_value else "–", r.bond_value),
            ]
            for j, item in enumerate(cells):
                if r.fits is False:
                    item.setToolTip(_("This offer does not accept the entered amount"))
                    item.setForeground(Qt.GlobalColor.gray)
                t.setItem(i, j, item)
        t.setSortingEnabled(True)
        makers = len({r.maker for r in rows})
        when = time.strftime("%H:%M:%S")
        extra = _(" — fees for {}").format(model.fmt_sats(amount)) if amount else \
            _(" — enter an amount to see each maker's fee")
        self.ob_status.setText(_("{} offers from {} makers at {}").format(len(rows), makers, when) + extra)

    @_guarded
    def _amount_changed(self) -> None:
        self.render_orderbook()

    @_guarded
    def _sweep_toggled(self, on: bool) -> None:
        self.amount_e.setEnabled(not on)
        self.render_orderbook()

    # ================================================================== the coinjoin
    @_guarded
    def fill_next_unused(self) -> None:
        addr = self.wallet.get_unused_address()
        if addr is None:
            self.show_error(_("This wallet has no unused receiving address left; create one in "
                              "the Receive tab."))
            return
        self.dest_e.setText(addr)

    def _update_coins_label(self) -> None:
        sel = self.main_window.get_manually_selected_coins()
        coins = model.spendable_coins(self.wallet, sel)
        total = sum(c.value_sats() for c in coins)
        fmt = self.main_window.format_amount_and_units
        if sel is None:
            self.coins_label.setText(_("all confirmed coins ({})").format(fmt(total)))
        else:
            self.coins_label.setText(_("{} coins selected in the Coins tab ({})").format(len(coins), fmt(total)))

    def form_input(self) -> model.FormInput:
        return model.FormInput(
            amount=None if self.sweep_cb.isChecked() else self.amount_e.get_amount(),
            sweep=self.sweep_cb.isChecked(), destination=self.dest_e.text(),
            n_makers=int(self.n_spin.value()),
            max_fee_abs=self.fee_abs_e.text(), max_fee_rel=self.fee_rel_e.text(),
            feerate_sat_vb=float(self.feerate_spin.value()),
            coins=self.main_window.get_manually_selected_coins(),
            offers=(self._book or {}).get("offers"),
            minimum_makers=min(int(self.plugin.config.JM_MINIMUM_MAKERS), int(self.n_spin.value())),
            script_type=self._script_type())

    def _script_type(self) -> str:
        from electrum_joinmarket.tx.taker_tx import TxBuildError, wallet_script_type
        try:
            return wallet_script_type(self.wallet)
        except TxBuildError:
            return "p2wpkh"

    def _ask_password(self) -> tuple[bool, Optional[str]]:
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

    @_guarded
    def start_coinjoin(self) -> None:
        if self._cj_future is not None and not self._cj_future.done():
            self.show_error(_("A coinjoin is already running in this wallet."))
            return
        try:
            overrides = model.check_form(self.form_input(), self.wallet)
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
        ok, password = self._ask_password()
        if not ok:
            return
        self._reset_progress()
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.stage_label.setText(_("starting"))
        self._append_log(_("Starting a coinjoin of {} to {}").format(
            model.fmt_sats(amount) if amount else _("everything (sweep)"), dest))
        try:
            fut = runner.start_coinjoin_task(self.wallet, config, password,
                                             progress=self._progress_from_loop,
                                             confirm=self._confirm_from_loop)
        except Exception as exc:
            self._finish_ui()
            self._show_exc(exc)
            return
        self._cj_future = fut
        self._futures.add(fut)
        fut.add_done_callback(lambda f: self.bridge.call.emit(partial(self._cj_done, f)))

    def _reset_progress(self) -> None:
        self.log_view.clear()
        self.outcome_label.setText("")
        self.makers_label.setText("")
        self.time_label.setText("")
        self._deadline = None
        self.last_txid = self.last_outcome = self.last_breakdown = None
        self.show_tx_button.setEnabled(False)
        self.history_button.setEnabled(False)

    def _append_log(self, text: str) -> None:
        self.log_view.appendPlainText(time.strftime("%H:%M:%S ") + text)

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
                loop.call_soon_threadsafe(lambda: answer.done() or answer.set_result(bool(ok)))
        self.bridge.call.emit(ask)

        async def wait() -> bool:
            return await answer
        return wait()

    # -- Qt thread --------------------------------------------------------------------------
    def confirm(self, breakdown: dict) -> bool:
        """The pre-signing confirmation (Qt thread). True = sign and send."""
        self.last_breakdown = dict(breakdown)
        self.stage_label.setText(_("waiting for your confirmation"))
        self._deadline = None
        d = ConfirmDialog(self.main_window, breakdown, format_btc=self.main_window.format_amount_and_units)
        self.confirm_dialog = d
        try:
            ok = bool(d.exec())
        finally:
            self.confirm_dialog = None
        self._append_log(_("You confirmed the coinjoin.") if ok else _("You declined the coinjoin."))
        return ok

    def on_progress(self, event: dict) -> None:
        if self._closed:
            return
        stage = event.get("stage", "")
        self.stage_label.setText(str(stage))
        self._append_log(str(event.get("message", "")))
        if stage == "channels":
            self._channels_live = str(event.get("message", ""))
            self._render_status()
        if event.get("nick"):
            self._last_nick = event["nick"]
            self._channels_up = True
            self._channels_live = ""
            self._render_status()
        asked, answered = event.get("makers_asked"), event.get("makers_answered")
        if stage == TakerStage.ORDERBOOK:
            self.makers_label.setText(_("{} offers from {} makers").format(event.get("offers", 0),
                                                                           event.get("makers", 0)))
        elif stage == TakerStage.CHOSEN and isinstance(event.get("makers"), list):
            self.makers_label.setText(_("chose {}").format(", ".join(event["makers"])))
        elif asked is not None:
            self.makers_label.setText(_("asked {}, answered {}").format(
                asked, "…" if answered is None else answered))
        if event.get("seconds_left") is not None:
            self._deadline = float(event.get("time", time.time())) + float(event["seconds_left"])
        elif stage in (TakerStage.IOAUTH, TakerStage.BROADCAST, TakerStage.CHOSEN) \
                or stage in TERMINAL_STAGES:
            self._deadline = None
            self.time_label.setText("")

    def _cj_done(self, fut: concurrent.futures.Future) -> None:
        self._futures.discard(fut)
        if self._closed:
            return
        self._finish_ui()
        try:
            outcome = fut.result()
        except BaseException as exc:        # noqa: BLE001
            msg = friendly_error(exc)
            self.outcome_label.setText(_("Coinjoin not started: {}").format(msg))
            self.stage_label.setText(_("failed"))
            self.show_error(msg)
            return
        o = outcome.to_dict() if hasattr(outcome, "to_dict") else dict(outcome)
        self.last_outcome = o
        self.refresh_history()
        if o.get("status") == OutcomeStatus.SUCCESS:
            self.last_txid = o.get("txid")
            pct = o["total_cost"] * 100 / o["cj_amount"] if o.get("cj_amount") else 0
            self.outcome_label.setText(_(
                "Coinjoin sent: {txid}\n{amount} with {n} makers; maker fees {fees}, miner fee "
                "{miner} (your share {share}); total cost {cost} = {pct:.4f} %").format(
                txid=self.last_txid, amount=model.fmt_sats(o["cj_amount"]), n=len(o.get("makers") or []),
                fees=model.fmt_sats(sum((o.get("maker_fees") or {}).values())),
                miner=model.fmt_sats(o.get("miner_fee")), share=model.fmt_sats(o.get("taker_miner_fee")),
                cost=model.fmt_sats(o.get("total_cost")), pct=pct))
            self.show_tx_button.setEnabled(True)
            self.history_button.setEnabled(True)
        else:
            status = o.get("status", "failed")
            cancelled = status == OutcomeStatus.CANCELLED
            head = _("Coinjoin cancelled") if cancelled else _("Coinjoin failed")
            text = f"{head}: {o.get('message', '')}\n{model.failure_hint(o.get('failure'))}"
            self.outcome_label.setText(text)
            if not cancelled:
                self.show_error(text)

    def _finish_ui(self) -> None:
        self._cj_future = None
        self._deadline = None
        self.time_label.setText("")
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self._update_coins_label()

    @_guarded
    def cancel_coinjoin(self) -> None:
        runner = self.plugin.runner
        get_asyncio_loop().call_soon_threadsafe(runner.cancel, self.wallet)
        self._append_log(_("Cancelling…"))
        self.cancel_button.setEnabled(False)

    # ================================================================== tx links
    @_guarded
    def show_tx(self, txid: Optional[str]) -> None:
        if not txid:
            return
        tx = self.wallet.db.get_transaction(txid)
        if tx is None:
            self.show_error(_("Transaction {} is not in this wallet (yet).").format(txid))
            return
        self.main_window.show_transaction(tx)

    @_guarded
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

    # ================================================================== history
    @_guarded
    def refresh_history(self) -> None:
        rows = list(reversed(self.plugin.runner.history(self.wallet)))
        t = self.hist_table
        t.setSortingEnabled(False)
        t.setRowCount(len(rows))
        for i, h in enumerate(rows):
            when = h.get("time") or 0
            fees = h.get("maker_fees") or {}
            txt = h.get("txid") or h.get("message") or ""
            items = [
                _NumItem(time.strftime("%Y-%m-%d %H:%M", time.localtime(when)), when),
                QTableWidgetItem(str(h.get("status", ""))),
                _NumItem(_("sweep") if h.get("sweep") and not h.get("cj_amount")
                         else model.fmt_sats(h.get("cj_amount")), h.get("cj_amount")),
                _NumItem(str(len(h.get("makers") or [])), len(h.get("makers") or [])),
                _NumItem(model.fmt_sats(sum(fees.values())), sum(fees.values())),
                _NumItem(model.fmt_sats(h.get("miner_fee")), h.get("miner_fee")),
                _NumItem(model.fmt_sats(h.get("total_cost")), h.get("total_cost")),
                QTableWidgetItem(txt),
            ]
            items[-1].setData(Qt.ItemDataRole.UserRole, h.get("txid"))
            items[-1].setToolTip(str(h.get("message", "")))
            for j, it in enumerate(items):
                t.setItem(i, j, it)
        t.setSortingEnabled(True)

    def history_txids(self) -> list[str]:
        return [self.hist_table.item(r, len(HISTORY_COLUMNS) - 1).data(Qt.ItemDataRole.UserRole)
                for r in range(self.hist_table.rowCount())]

    @_guarded
    def _history_double_clicked(self, row: int, _col: int) -> None:
        item = self.hist_table.item(row, len(HISTORY_COLUMNS) - 1)
        txid = item.data(Qt.ItemDataRole.UserRole) if item else None
        if txid:
            self.show_tx(txid)

    # ================================================================== maker
    @_guarded
    def refresh_maker(self) -> None:
        session = self.plugin.session_for(self.wallet)
        maker = session.maker
        fmt = self.main_window.format_amount_and_units
        if maker is not None:
            st = maker.status()
            offers = ", ".join(f"{o.get('ordertype')} {o.get('cjfee')} ({o.get('minsize')}–{o.get('maxsize')} sat)"
                               for o in st.get("offers") or [])
            text = _("Running as {nick}.\nOffers: {offers}\nActive sessions: {s}\nReserved coins: {r}\n"
                     "Coinjoins: {n}\nEarned: {earned}\nRefused takers: {ref}").format(
                nick=st.get("nick"), offers=offers or "–", s=len(st.get("sessions") or []),
                r=len(st.get("reserved_coins") or []), n=st.get("coinjoins", 0),
                earned=fmt(int(st.get("earned_total") or 0)), ref=st.get("refusals", 0))
        else:
            hist = session.storage.get("maker_history") or {}
            earned = sum(int(r.get("earned", 0)) for r in hist.values()) if isinstance(hist, dict) else 0
            text = _("Not running.\nCoinjoins so far: {n}\nEarned so far: {earned}").format(
                n=len(hist), earned=fmt(earned))
        self.m_status.setText(text)
        busy_taker = session.role == Role.TAKER
        self.m_start.setEnabled(maker is None and not busy_taker)
        self.m_stop.setEnabled(maker is not None)

    @_guarded
    def start_maker(self) -> None:
        kind = self.m_type.currentData()
        settings = {"ordertype": kind, "txfee": int(self.m_txfee.value()),
                    "minsize": int(self.m_minsize.value())}
        if kind == "reloffer":
            from decimal import Decimal, InvalidOperation
            try:
                r = Decimal(self.m_cjfee_r.text().strip())
                if not 0 <= r < 1:
                    raise InvalidOperation
            except InvalidOperation:
                self.show_error(_("The relative fee is a fraction such as 0.00002 (= 0.002 %)."))
                return
            settings["cjfee_r"] = str(r)
        else:
            settings["cjfee_a"] = int(self.m_cjfee_a.value())
        ok, password = self._ask_password()
        if not ok:
            return
        self.m_start.setEnabled(False)
        self.m_status.setText(_("Starting the maker…"))

        def done(_st: Any) -> None:
            self._channels_up = True
            self._render_status()
            self.refresh_maker()

        def failed(exc: BaseException) -> None:
            self.refresh_maker()
            self._show_exc(exc)
        self.run_async(self.plugin.runner.start_maker(self.wallet, password, **settings), done, failed)

    @_guarded
    def stop_maker(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self._stop_maker(), get_asyncio_loop())
        fut.add_done_callback(lambda f: self.bridge.call.emit(self.refresh_maker))

    async def _stop_maker(self) -> bool:
        return self.plugin.runner.stop_maker(self.wallet)
