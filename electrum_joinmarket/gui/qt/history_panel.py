"""The history view: this wallet's coinjoins as a taker (from its plugin storage), newest first;
a double-click opens the transaction in Electrum."""
from __future__ import annotations

import time
from typing import Any

from electrum.i18n import _
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QLabel, QTableWidgetItem, QVBoxLayout

from electrum_joinmarket.gui import model
from electrum_joinmarket.gui.qt.common import NumItem, Panel, guarded, make_table

__all__ = ["HistoryPanel", "HISTORY_COLUMNS"]

HISTORY_COLUMNS = [_("Date"), _("Status"), _("Amount"), _("Makers"), _("Maker fees"),
                   _("Miner fee"), _("Total cost"), _("Transaction / message")]


class HistoryPanel(Panel):
    def __init__(self, tab: Any):
        super().__init__(tab)
        v = QVBoxLayout(self)
        self.hist_table = make_table(HISTORY_COLUMNS)
        self.hist_table.setObjectName("jm_history")
        self.hist_table.cellDoubleClicked.connect(self._double_clicked)
        v.addWidget(self.hist_table)
        v.addWidget(QLabel(_("Double-click a coinjoin to open its transaction.")))

    @guarded
    def refresh(self) -> None:
        rows = list(reversed(self.plugin.runner.history(self.wallet)))
        t = self.hist_table
        t.setSortingEnabled(False)
        t.setRowCount(len(rows))
        for i, h in enumerate(rows):
            when = h.get("time") or 0
            fees = h.get("maker_fees") or {}
            txt = h.get("txid") or h.get("message") or ""
            items = [
                NumItem(time.strftime("%Y-%m-%d %H:%M", time.localtime(when)), when),
                QTableWidgetItem(str(h.get("status", ""))),
                NumItem(_("sweep") if h.get("sweep") and not h.get("cj_amount")
                        else model.fmt_sats(h.get("cj_amount")), h.get("cj_amount")),
                NumItem(str(len(h.get("makers") or [])), len(h.get("makers") or [])),
                NumItem(model.fmt_sats(sum(fees.values())), sum(fees.values())),
                NumItem(model.fmt_sats(h.get("miner_fee")), h.get("miner_fee")),
                NumItem(model.fmt_sats(h.get("total_cost")), h.get("total_cost")),
                QTableWidgetItem(txt),
            ]
            items[-1].setData(Qt.ItemDataRole.UserRole, h.get("txid"))
            items[-1].setToolTip(str(h.get("message", "")))
            for j, it in enumerate(items):
                t.setItem(i, j, it)
        t.setSortingEnabled(True)

    def txids(self) -> list[str]:
        return [self.hist_table.item(r, len(HISTORY_COLUMNS) - 1).data(Qt.ItemDataRole.UserRole)
                for r in range(self.hist_table.rowCount())]

    @guarded
    def _double_clicked(self, row: int, _col: int) -> None:
        item = self.hist_table.item(row, len(HISTORY_COLUMNS) - 1)
        txid = item.data(Qt.ItemDataRole.UserRole) if item else None
        if txid:
            self.tab.show_tx(txid)
