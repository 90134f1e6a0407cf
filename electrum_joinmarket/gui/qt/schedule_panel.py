"""The "Multiple join" view of the JoinMarket tab: create schedules (a tumble from a few
parameters, or steps written by hand), inspect their steps, start, stop and resume them, add the
address a step asks for.

Thin over :class:`electrum_joinmarket.schedule.service.ScheduleService`: starting runs on
Electrum's asyncio loop; the service's events (any thread) reach the Qt thread through a queued
signal; errors are shown with Electrum's message boxes."""
from __future__ import annotations

import asyncio
from typing import Any, Optional

from electrum.i18n import _
from electrum.util import get_asyncio_loop
from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from electrum_joinmarket.gui.qt.common import Bridge, make_table
from electrum_joinmarket.logs import get_logger
from electrum_joinmarket.schedule.model import ADDRASK, INTERNAL, ScheduleError, StepStatus

log = get_logger(__name__)

__all__ = ["SchedulePanel", "TumbleDialog", "StepsDialog"]

SCHEDULE_COLUMNS = [_("Schedule"), _("Name"), _("Status"), _("Steps done"), _("Message")]
STEP_COLUMNS = [_("#"), _("Depth"), _("Amount"), _("Makers"), _("Destination"), _("Wait"),
                _("Status"), _("Attempts"), _("Coinjoin")]


def _table(columns: list[str], name: str) -> QTableWidget:
    t = make_table(columns)
    t.setObjectName(name)
    t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    return t


def amount_text(step: dict) -> str:
    a = step["amount"]
    if a == 0:
        return _("sweep")
    if isinstance(a, str):
        return f"{float(a) * 100:.2f} %" + (f" → {step['cj_amount']} sat" if step.get("cj_amount") else "")
    return f"{a} sat"


def wait_text(step: dict) -> str:
    parts = []
    if step.get("wait_blocks"):
        parts.append(_("{} block(s)").format(step["wait_blocks"]))
    if step.get("wait_minutes"):
        parts.append(_("{:g} min").format(step["wait_minutes"]))
    return ", ".join(parts) or "–"


class TumbleDialog(QDialog):
    """Parameters of a tumble (the reference tumbler's, defaults included)."""

    def __init__(self, parent: Any, depth_count: int):
        super().__init__(parent)
        self.setWindowTitle(_("New tumble"))
        self.setObjectName("jm_tumble_dialog")
        form = QFormLayout(self)
        self.destinations = QPlainTextEdit()
        self.destinations.setPlaceholderText(_("destination addresses, one per line (of another "
                                               "wallet); missing ones are asked for later"))
        form.addRow(_("Destinations"), self.destinations)
        self.addrcount = QSpinBox()
        self.addrcount.setRange(1, max(1, depth_count - 1))
        self.addrcount.setValue(min(3, depth_count - 1))
        form.addRow(_("Number of destinations"), self.addrcount)
        self.mixdepthcount = QSpinBox()
        self.mixdepthcount.setRange(1, max(1, depth_count - 1))
        self.mixdepthcount.setValue(min(4, depth_count - 1))
        form.addRow(_("Depths to mix through"), self.mixdepthcount)
        self.makers = QDoubleSpinBox()
        self.makers.setRange(1, 20)
        self.makers.setValue(9)
        form.addRow(_("Makers per coinjoin (mean)"), self.makers)
        self.minmakers = QSpinBox()
        self.minmakers.setRange(1, 20)
        self.minmakers.setValue(4)
        form.addRow(_("Makers per coinjoin (minimum)"), self.minmakers)
        self.timelambda = QDoubleSpinBox()
        self.timelambda.setRange(0, 24 * 60)
        self.timelambda.setValue(60)
        self.timelambda.setSuffix(_(" min"))
        form.addRow(_("Mean wait between coinjoins"), self.timelambda)
        self.wait_blocks = QSpinBox()
        self.wait_blocks.setRange(0, 1000)
        form.addRow(_("Extra wait after each coinjoin"), self.wait_blocks)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok |
                                   QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def values(self) -> tuple[dict, list[str]]:
        params = {"addrcount": self.addrcount.value(), "mixdepthcount": self.mixdepthcount.value(),
                  "makercountrange": [self.makers.value(), 1.0],
                  "minmakercount": self.minmakers.value(), "timelambda": self.timelambda.value(),
                  "wait_blocks": self.wait_blocks.value()}
        dests = [x.strip() for x in self.destinations.toPlainText().split() if x.strip()]
        return params, dests


class StepsDialog(QDialog):
    """Steps written by hand: one row per coinjoin."""

    COLUMNS = [_("Depth"), _("Amount (sats, fraction, 0 = sweep)"), _("Makers"),
               _("Destination (address, INTERNAL, ADDRASK)"), _("Wait blocks"), _("Wait minutes")]

    def __init__(self, parent: Any, depth_count: int):
        super().__init__(parent)
        self.setWindowTitle(_("New schedule"))
        self.setObjectName("jm_steps_dialog")
        self.resize(900, 360)
        self.depth_count = depth_count
        v = QVBoxLayout(self)
        self.name = QLineEdit()
        self.name.setPlaceholderText(_("name (optional)"))
        v.addWidget(self.name)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        hh = self.table.horizontalHeader()
        assert hh is not None
        hh.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hh.setStretchLastSection(True)
        self.rows: list[tuple[QSpinBox, QTableWidgetItem, QSpinBox, QTableWidgetItem, QSpinBox,
                              QDoubleSpinBox]] = []
        v.addWidget(self.table, 1)
        row = QHBoxLayout()
        add = QPushButton(_("Add step"))
        add.clicked.connect(lambda: self.add_step())
        remove = QPushButton(_("Remove step"))
        remove.clicked.connect(self.remove_step)
        row.addWidget(add)
        row.addWidget(remove)
        row.addStretch(1)
        v.addLayout(row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok |
                                   QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        v.addWidget(buttons)
        self.add_step()

    def add_step(self, depth: int = 0, amount: str = "0", makers: int = 4,
                 destination: str = INTERNAL, wait_blocks: int = 0,
                 wait_minutes: float = 0) -> None:
        r = self.table.rowCount()
        self.table.insertRow(r)
        d = QSpinBox()
        d.setRange(0, self.depth_count - 1)
        d.setValue(depth)
        self.table.setCellWidget(r, 0, d)
        amt = QTableWidgetItem(amount)
        self.table.setItem(r, 1, amt)
        m = QSpinBox()
        m.setRange(1, 20)
        m.setValue(makers)
        self.table.setCellWidget(r, 2, m)
        dest = QTableWidgetItem(destination)
        self.table.setItem(r, 3, dest)
        wb = QSpinBox()
        wb.setRange(0, 10_000)
        wb.setValue(wait_blocks)
        self.table.setCellWidget(r, 4, wb)
        wm = QDoubleSpinBox()
        wm.setRange(0, 43_200)
        wm.setValue(wait_minutes)
        self.table.setCellWidget(r, 5, wm)
        self.rows.append((d, amt, m, dest, wb, wm))

    def remove_step(self) -> None:
        r = self.table.currentRow()
        if r >= 0:
            self.table.removeRow(r)
            del self.rows[r]

    def steps(self) -> list[dict]:
        return [{"depth": d.value(), "amount": (amt.text() or "0").strip(),
                 "counterparties": m.value(), "destination": (dest.text() or "").strip(),
                 "wait_blocks": wb.value(), "wait_minutes": wm.value()}
                for d, amt, m, dest, wb, wm in self.rows]


class SchedulePanel(QWidget):
    """See module docstring."""

    def __init__(self, service: Any, depths: Any, window: Any, *, refresh_ms: int = 2000):
        super().__init__()
        self.service = service
        self.depths = depths
        self.main_window = window
        self.setObjectName("jm_schedule_panel")
        self.bridge = Bridge()
        self._closed = False
        self._selected: Optional[str] = None
        self._build()
        self._listener = lambda ev: self.bridge.call.emit(lambda: self._on_event(ev))
        service.add_listener(self._listener)
        self.timer = QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        v = QVBoxLayout(self)
        intro = QLabel(_("A schedule runs several coinjoins one after another, each from one "
                         "depth, with waits between them; it is saved in the wallet and resumes "
                         "after Electrum restarts. A tumble is a schedule made for you from a "
                         "few parameters (JoinMarket's tumbler)."))
        intro.setWordWrap(True)
        v.addWidget(intro)
        row = QHBoxLayout()
        self.new_tumble_button = QPushButton(_("New tumble…"))
        self.new_tumble_button.setObjectName("jm_new_tumble")
        self.new_tumble_button.clicked.connect(self.new_tumble)
        self.new_steps_button = QPushButton(_("New schedule…"))
        self.new_steps_button.setObjectName("jm_new_schedule")
        self.new_steps_button.clicked.connect(self.new_schedule)
        self.start_button = QPushButton(_("Start / Resume"))
        self.start_button.setObjectName("jm_schedule_start")
        self.start_button.clicked.connect(self.start_selected)
        self.stop_button = QPushButton(_("Stop"))
        self.stop_button.setObjectName("jm_schedule_stop")
        self.stop_button.clicked.connect(self.stop_selected)
        self.address_button = QPushButton(_("Add address…"))
        self.address_button.clicked.connect(self.add_address)
        self.delete_button = QPushButton(_("Delete"))
        self.delete_button.clicked.connect(self.delete_selected)
        for b in (self.new_tumble_button, self.new_steps_button, self.start_button,
                  self.stop_button, self.address_button, self.delete_button):
            row.addWidget(b)
        row.addStretch(1)
        v.addLayout(row)
        split = QSplitter(Qt.Orientation.Vertical)
        self.sched_table = _table(SCHEDULE_COLUMNS, "jm_schedules")
        self.sched_table.itemSelectionChanged.connect(self._schedule_selected)
        split.addWidget(self.sched_table)
        self.steps_table = _table(STEP_COLUMNS, "jm_schedule_steps")
        split.addWidget(self.steps_table)
        split.setSizes([140, 300])
        v.addWidget(split, 1)
        self.progress_label = QLabel()
        self.progress_label.setObjectName("jm_schedule_progress")
        self.progress_label.setWordWrap(True)
        v.addWidget(self.progress_label)

    # ------------------------------------------------------------------ refresh
    def _on_event(self, ev: dict) -> None:
        if self._closed:
            return
        if ev.get("event") == "progress":
            self.progress_label.setText(_("Step {}: {}").format(
                int(ev.get("step", 0)) + 1, ev.get("message", "")))
            return
        self.refresh()

    def refresh(self) -> None:
        if self._closed:
            return
        try:
            self._refresh()
        except Exception:
            log.exception("multiple join view: refresh failed")

    def _refresh(self) -> None:
        scheds = self.service.status()
        t = self.sched_table
        t.blockSignals(True)
        t.setRowCount(len(scheds))
        sel_row = None
        for r, s in enumerate(scheds):
            status = s["status"] + (" ▶" if s.get("running") else "")
            cells = [s["id"], s["name"], status, f"{s['steps_done']} / {s['steps_total']}",
                     s["message"]]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(str(text))
                item.setData(Qt.ItemDataRole.UserRole, s["id"])
                t.setItem(r, col, item)
            if s["id"] == self._selected:
                sel_row = r
        if sel_row is None and scheds:
            sel_row = len(scheds) - 1
            self._selected = scheds[-1]["id"]
        if sel_row is not None:
            t.selectRow(sel_row)
        t.blockSignals(False)
        self._show_steps(next((s for s in scheds if s["id"] == self._selected), None))
        running = self.service.busy
        sel = next((s for s in scheds if s["id"] == self._selected), None)
        self.start_button.setEnabled(sel is not None and not running and sel["status"] != "done")
        self.stop_button.setEnabled(running)
        self.address_button.setEnabled(bool(sel) and any(
            st["destination"] == ADDRASK and not st.get("destination_used")
            for st in (sel or {}).get("steps", [])))
        self.delete_button.setEnabled(bool(sel) and not (running and self.service.running_id
                                                         == self._selected))

    def _show_steps(self, sched: Optional[dict]) -> None:
        t = self.steps_table
        steps = sched["steps"] if sched else []
        t.setRowCount(len(steps))
        for r, st in enumerate(steps):
            dest = st["destination"]
            if dest == INTERNAL:
                dest = _("next depth") + (f" ({st['destination_used']})"
                                          if st.get("destination_used") else "")
            elif dest == ADDRASK:
                dest = st.get("destination_used") or _("(address needed)")
            current = sched is not None and r == sched["current"] and \
                st["status"] != StepStatus.DONE
            status = st["status"] + (" ◀" if current else "")
            cells = [str(r + 1), str(st["depth"]), amount_text(st), str(st["counterparties"]),
                     dest, wait_text(st), status, str(st["attempts"]), st.get("txid") or
                     (st.get("error") or "")]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 8 and st.get("error"):
                    item.setToolTip(st["error"])
                t.setItem(r, col, item)

    def _schedule_selected(self) -> None:
        items = self.sched_table.selectedItems()
        if items:
            self._selected = items[0].data(Qt.ItemDataRole.UserRole)
        self.refresh()

    # ------------------------------------------------------------------ actions
    def _error(self, exc: BaseException) -> None:
        if isinstance(exc, (asyncio.CancelledError,)):
            return
        self.main_window.show_error(str(exc) or type(exc).__name__, parent=self)

    def new_tumble(self) -> None:
        d = TumbleDialog(self, self.depths.count)
        if not d.exec():
            return
        params, dests = d.values()
        try:
            s = self.service.create(tumbler=params, destinations=dests)
        except ScheduleError as exc:
            self._error(exc)
            return
        self._selected = s.id
        self.refresh()

    def new_schedule(self) -> None:
        d = StepsDialog(self, self.depths.count)
        if not d.exec():
            return
        try:
            s = self.service.create(steps=d.steps(), name=d.name.text().strip())
        except ScheduleError as exc:
            self._error(exc)
            return
        self._selected = s.id
        self.refresh()

    def start_selected(self) -> None:
        sid = self._selected
        if sid is None:
            return
        password = None
        wallet = self.service.wallet
        if wallet.has_keystore_encryption() and not wallet.is_unlocked():
            password = self.main_window.password_dialog(
                _("The schedule signs its coinjoins while it runs: enter the wallet password."))
            if not password:
                return

        async def go() -> Any:
            return self.service.start(sid, password)

        fut = asyncio.run_coroutine_threadsafe(go(), get_asyncio_loop())

        def settle(f: Any) -> None:
            try:
                f.result()
            except BaseException as exc:
                self.bridge.call.emit(lambda e=exc: self._error(e))
            self.bridge.call.emit(self.refresh)
        fut.add_done_callback(settle)

    def stop_selected(self) -> None:
        self.service.stop()
        self.progress_label.setText(_("Stopping… the coinjoin in progress is cancelled; nothing "
                                      "of it was spent unless it was already broadcast."))
        self.refresh()

    def add_address(self) -> None:
        sid = self._selected
        if sid is None:
            return
        sched = self.service.store.load(sid)
        for i, st in enumerate(sched.steps):
            if st.destination == ADDRASK and not st.destination_used:
                text, ok = _ask_text(self, _("Destination of step {}").format(i + 1),
                                     _("Address (of another wallet) for step {} ({}):").format(
                                         i + 1, st.describe()))
                if not ok or not text.strip():
                    return
                try:
                    self.service.set_destination(sid, i + 1, text.strip())
                except ScheduleError as exc:
                    self._error(exc)
                    return
        self.refresh()

    def delete_selected(self) -> None:
        sid = self._selected
        if sid is None or not self.main_window.question(_("Delete schedule {}?").format(sid),
                                                   parent=self):
            return
        try:
            self.service.delete(sid)
        except ScheduleError as exc:
            self._error(exc)
        self._selected = None
        self.refresh()

    def clean_up(self) -> None:
        self._closed = True
        self.timer.stop()
        self.service.remove_listener(self._listener)


def _ask_text(parent: Any, title: str, label: str) -> tuple[str, bool]:
    from PyQt6.QtWidgets import QInputDialog
    return QInputDialog.getText(parent, title, label)
