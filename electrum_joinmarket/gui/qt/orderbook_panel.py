"""The orderbook view: the network's offers, collected through the daemon on *Refresh*, with each
maker's fee for the amount in the form and its fidelity bond's value (checked on-chain)."""
from __future__ import annotations

import time
from typing import Any, Optional

from electrum.i18n import _
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QTableWidgetItem, QVBoxLayout

from electrum_joinmarket.gui import model
from electrum_joinmarket.gui.qt.common import NumItem, Panel, friendly_error, guarded, make_table

__all__ = ["OrderbookPanel", "ORDERBOOK_COLUMNS"]

ORDERBOOK_COLUMNS = [_("Maker"), _("Type"), _("Min size"), _("Max size"), _("Offer fee"),
                     _("Fee for amount"), _("Fee %"), _("Miner fee contrib."), _("Bond value")]


class OrderbookPanel(Panel):
    def __init__(self, tab: Any):
        super().__init__(tab)
        self._book: Optional[dict] = None
        self._bonds: dict[str, float] = {}
        v = QVBoxLayout(self)
        row = QHBoxLayout()
        self.ob_status = QLabel(_("Press Refresh to collect the offers of the JoinMarket network."))
        self.ob_refresh_button = QPushButton(_("Refresh"))
        self.ob_refresh_button.setObjectName("jm_ob_refresh")
        self.ob_refresh_button.clicked.connect(self.refresh)
        row.addWidget(self.ob_status, 1)
        row.addWidget(self.ob_refresh_button)
        v.addLayout(row)
        self.ob_table = make_table(ORDERBOOK_COLUMNS)
        self.ob_table.setObjectName("jm_orderbook")
        v.addWidget(self.ob_table)

    def offers(self) -> Optional[list]:
        """The raw offers of the last orderbook fetched (None if none was)."""
        return (self._book or {}).get("offers")

    def channels_report(self, report: Any) -> None:
        """A live report of the daemon's channels while the orderbook is fetched (any thread)."""
        text, up = report.summary(), report.up

        def show() -> None:
            status = self.tab.status
            status.link_changed()          # the daemon may just have been started for this
            if not self.ob_refresh_button.isEnabled():
                wait = float(self.plugin.config.JM_ORDERBOOK_WAIT)
                self.ob_status.setText(
                    _("Collecting offers for {:.0f} s…").format(wait) if up else
                    _("Reaching the JoinMarket directory nodes through Tor…"))
            status.channels_live(text)
        self.tab.bridge.call.emit(show)

    @guarded
    def refresh(self) -> None:
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
            self.tab.status.link_changed()
            self.tab.status.set_channels_up(True)
            self.render()

        def failed(exc: BaseException) -> None:
            self.ob_refresh_button.setEnabled(True)
            self.ob_status.setText(_("No orderbook: {}").format(friendly_error(exc)))
            status = self.tab.status
            status.link_changed()
            status.set_channels_up(False if status.daemon_usable else None)
            self.show_exc(exc)
        self.run_async(fetch(), done, failed)

    @guarded
    def render(self) -> None:
        if self._book is None:
            return
        amount = self.tab.form.amount()
        rows = model.offer_rows(self._book.get("offers") or [], amount, self._bonds)
        t = self.ob_table
        t.setSortingEnabled(False)
        t.setRowCount(len(rows))
        for i, r in enumerate(rows):
            cells = [
                QTableWidgetItem(r.maker),
                QTableWidgetItem(r.kind),
                NumItem(model.fmt_sats(r.minsize), r.minsize),
                NumItem(model.fmt_sats(r.maxsize), r.maxsize),
                NumItem(r.cjfee_text, float(r.cjfee) if r.kind == "relative" else int(r.cjfee)),
                NumItem(model.fmt_sats(r.fee_sats) if r.fee_sats is not None else "–", r.fee_sats),
                NumItem(f"{r.fee_percent:.4f} %" if r.fee_percent is not None else "–", r.fee_percent),
                NumItem(model.fmt_sats(r.txfee), r.txfee),
                NumItem(f"{r.bond_value:.8g}" if r.bond_value else "–", r.bond_value),
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
