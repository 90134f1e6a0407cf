"""The "Depths" view of the JoinMarket tab: the wallet's coins by JoinMarket depth (mixdepth),
their balance, how many coinjoins each coin went through, why it is in its depth; the deposit
depth; moving coins between depths; the rebuild report and merge warnings; and the advisory
about spending from Electrum's own Send tab.

Reads :class:`electrum_joinmarket.depths.record.DepthRecord` only (synchronous, no network), so
everything here runs on the Qt thread."""
from __future__ import annotations

from typing import Any, Optional

from electrum.i18n import _
from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from electrum_joinmarket.depths import rules
from electrum_joinmarket.depths.record import DepthError, DepthRecord
from electrum_joinmarket.gui.qt.common import NumItem, make_table
from electrum_joinmarket.logs import get_logger

log = get_logger(__name__)

__all__ = ["DepthsPanel", "ADVISORY", "KIND_TEXT"]

DEPTH_COLUMNS = [_("Depth"), _("Confirmed"), _("Unconfirmed"), _("Frozen"), _("Coins"),
                 _("Most coinjoins")]
COIN_COLUMNS = [_("Coin"), _("Address"), _("Amount"), _("Depth"), _("Coinjoins"), _("Why here"),
                _("Frozen")]

KIND_TEXT = {
    rules.DEPOSIT: _("arrived from outside"),
    rules.CJ_OUT: _("coinjoin output"),
    rules.CJ_CHANGE: _("coinjoin change"),
    rules.CHANGE: _("change of a payment"),
    rules.MERGED: _("output of a merge"),
    rules.ADDRESS: _("paid to a reserved address"),
    rules.USER: _("moved here by you"),
}

ADVISORY = _(
    "JoinMarket keeps coins of different histories apart in depths: a coinjoin's output goes to "
    "the next depth, its change stays where it was. The plugin never spends coins of two depths "
    "together. Electrum's own Send tab does not know about depths: a payment from it may merge "
    "depths and link what your coinjoins separated. Electrum asks you before signing such a "
    "payment; to avoid it, select coins of one depth in the Coins tab (their depth is shown in "
    "the label and tooltip) and use 'Spend' from there.")


def _table(columns: list[str], name: str) -> QTableWidget:
    t = make_table(columns)
    t.setObjectName(name)
    return t


class DepthsPanel(QWidget):
    """See module docstring. ``format_amount`` is the window's (Electrum's unit setting)."""

    def __init__(self, depths: DepthRecord, window: Any, *, refresh_ms: int = 5000):
        super().__init__()
        self.depths = depths
        self.main_window = window
        self.setObjectName("jm_depths_panel")
        self._filter: Optional[int] = None
        self._build()
        self.timer = QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        v = QVBoxLayout(self)
        row = QHBoxLayout()
        self.report_label = QLabel()
        self.report_label.setObjectName("jm_depth_report")
        self.report_label.setWordWrap(True)
        self.report_label.setStyleSheet("QLabel { background: #fff3cd; padding: 6px; }")
        self.dismiss_button = QPushButton(_("Dismiss"))
        self.dismiss_button.clicked.connect(self.dismiss_report)
        row.addWidget(self.report_label, 1)
        row.addWidget(self.dismiss_button)
        v.addLayout(row)
        self.merge_label = QLabel()
        self.merge_label.setObjectName("jm_depth_merges")
        self.merge_label.setWordWrap(True)
        self.merge_label.setStyleSheet("QLabel { color: #a94442; }")
        v.addWidget(self.merge_label)

        split = QSplitter(Qt.Orientation.Vertical)
        self.depth_table = _table(DEPTH_COLUMNS, "jm_depths_table")
        self.depth_table.itemSelectionChanged.connect(self._depth_selected)
        vh = self.depth_table.verticalHeader()
        assert vh is not None
        vh.setDefaultSectionSize(22)
        split.addWidget(self.depth_table)
        self.coin_table = _table(COIN_COLUMNS, "jm_depth_coins")
        self.coin_table.setSortingEnabled(True)
        self.coin_table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        split.addWidget(self.coin_table)
        split.setSizes([165, 260])
        v.addWidget(split, 1)

        row = QHBoxLayout()
        self.filter_label = QLabel()
        row.addWidget(self.filter_label)
        row.addStretch(1)
        row.addWidget(QLabel(_("New deposits go to depth")))
        self.deposit_combo = QComboBox()
        self.deposit_combo.setObjectName("jm_deposit_depth")
        self.deposit_combo.activated.connect(self._deposit_changed)
        row.addWidget(self.deposit_combo)
        row.addSpacing(20)
        self.move_combo = QComboBox()
        self.move_button = QPushButton(_("Move selected coins to depth"))
        self.move_button.setObjectName("jm_move_coins")
        self.move_button.clicked.connect(self.move_selected)
        row.addWidget(self.move_button)
        row.addWidget(self.move_combo)
        v.addLayout(row)

        self.advisory = QLabel(ADVISORY)
        self.advisory.setObjectName("jm_depth_advisory")
        self.advisory.setWordWrap(True)
        self.advisory.setStyleSheet("QLabel { color: #555; }")
        v.addWidget(self.advisory)

    def _fmt(self, sats: int) -> str:
        if sats == 0:
            return "–"
        try:
            return self.main_window.format_amount_and_units(sats)
        except Exception:
            return f"{sats} sat"

    # ------------------------------------------------------------------ refresh
    def refresh(self) -> None:
        try:
            self._refresh()
        except Exception:                        # never out of a Qt slot
            log.exception("depths view: refresh failed")

    def _refresh(self) -> None:
        rec = self.depths
        coins = rec.coins()
        report = rec.report()
        self.report_label.setText(report.message() if report else "")
        self.report_label.setVisible(report is not None)
        self.dismiss_button.setVisible(report is not None)
        merges = rec.merges()
        if merges:
            last = merges[-3:]
            text = _("{} transaction(s) of this wallet spent coins of different depths together "
                     "(their histories are linked): ").format(len(merges))
            text += "; ".join(f"{m['txid'][:16]}… ({_('depths')} "
                              f"{', '.join(str(d) for d in m['depths'])})" for m in last)
            self.merge_label.setText(text)
        self.merge_label.setVisible(bool(merges))

        count = rec.count
        t = self.depth_table
        selected = self._filter
        t.blockSignals(True)
        t.setRowCount(count)
        for d in range(count):
            mine = [c for c in coins if c.depth == d]
            conf = sum(c.value for c in mine if c.confirmed and not c.frozen)
            unconf = sum(c.value for c in mine if not c.confirmed)
            frozen = sum(c.value for c in mine if c.frozen)
            most = max((c.coinjoins for c in mine), default=0)
            cells = [NumItem(str(d), d), NumItem(self._fmt(conf), conf), NumItem(self._fmt(unconf), unconf),
                     NumItem(self._fmt(frozen), frozen), NumItem(str(len(mine)), len(mine)),
                     NumItem(str(most), most)]
            for col, item in enumerate(cells):
                t.setItem(d, col, item)
        if selected is not None and selected < count:
            t.selectRow(selected)
        t.blockSignals(False)

        shown = [c for c in coins if self._filter is None or c.depth == self._filter]
        ct = self.coin_table
        ct.setSortingEnabled(False)
        ct.setRowCount(len(shown))
        for r, c in enumerate(shown):
            op = QTableWidgetItem(c.outpoint[:16] + "…:" + c.outpoint.split(":")[1])
            op.setData(Qt.ItemDataRole.UserRole, c.outpoint)
            op.setToolTip(c.outpoint)
            row: list[QTableWidgetItem] = [
                op, QTableWidgetItem(c.address), NumItem(self._fmt(c.value), c.value),
                NumItem(str(c.depth), c.depth), NumItem(str(c.coinjoins), c.coinjoins),
                QTableWidgetItem(KIND_TEXT.get(c.kind, c.kind)),
                QTableWidgetItem(_("yes") if c.frozen else "")]
            for col, cell in enumerate(row):
                ct.setItem(r, col, cell)
        ct.setSortingEnabled(True)
        self.filter_label.setText(_("Coins of depth {}").format(self._filter)
                                  if self._filter is not None else _("All coins"))

        for combo, current in ((self.deposit_combo, rec.deposit_depth),
                               (self.move_combo, self.move_combo.currentIndex())):
            if combo.count() != count:
                combo.clear()
                combo.addItems([str(d) for d in range(count)])
            if current is not None and 0 <= current < count:
                combo.setCurrentIndex(current)

    def _depth_selected(self) -> None:
        rows = {i.row() for i in self.depth_table.selectedItems()}
        self._filter = rows.pop() if len(rows) == 1 else None
        self.refresh()

    # ------------------------------------------------------------------ actions
    def selected_outpoints(self) -> list[str]:
        rows = sorted({i.row() for i in self.coin_table.selectedItems()})
        out = []
        for r in rows:
            item = self.coin_table.item(r, 0)
            if item is not None:
                out.append(item.data(Qt.ItemDataRole.UserRole))
        return out

    def move_selected(self) -> None:
        outpoints = self.selected_outpoints()
        if not outpoints:
            self.main_window.show_message(_("Select coins in the list first."), parent=self)
            return
        depth = self.move_combo.currentIndex()
        if not self.main_window.question(
                _("Move {} coin(s) to depth {}? Do this for coins that arrived from outside; a "
                  "coinjoin output moved back loses the separation it bought.").format(
                    len(outpoints), depth), parent=self):
            return
        try:
            for op in outpoints:
                self.depths.set_coin_depth(op, depth)
        except DepthError as exc:
            self.main_window.show_error(str(exc), parent=self)
        self.refresh()

    def _deposit_changed(self, index: int) -> None:
        try:
            self.depths.set_deposit_depth(index)
        except DepthError as exc:
            self.main_window.show_error(str(exc), parent=self)
        self.refresh()

    def dismiss_report(self) -> None:
        self.depths.dismiss_report()
        self.refresh()

    def clean_up(self) -> None:
        self.timer.stop()
