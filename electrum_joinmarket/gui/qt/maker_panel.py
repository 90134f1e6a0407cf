"""The maker view: the offer (relative or absolute fee, miner-fee contribution, minimum size;
amounts in Electrum's unit), *Start maker* / *Stop maker*, the auto-start choice, what the running
maker reports (offers, sessions, reserved coins, coinjoins, earnings, refused takers) and the
earnings table. The offer and auto-start are the wallet's (kept in its file by the runner,
issue 14.11): the panel shows the remembered ones."""
from __future__ import annotations

import asyncio
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from electrum.gui.qt.amountedit import BTCAmountEdit
from electrum.i18n import _
from electrum.util import get_asyncio_loop
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidgetItem,
    QVBoxLayout,
)

from electrum_joinmarket.gui.qt.common import Panel, guarded, make_table
from electrum_joinmarket.stages import Role

__all__ = ["MakerPanel"]


class MakerPanel(Panel):
    def __init__(self, tab: Any):
        super().__init__(tab)
        h = QHBoxLayout(self)
        box = QGroupBox(_("Offer"))
        form = QFormLayout(box)
        self.m_type = QComboBox()
        self.m_type.addItem(_("relative fee"), "reloffer")
        self.m_type.addItem(_("absolute fee"), "absoffer")
        form.addRow(_("Fee type"), self.m_type)
        dp = self.main_window.get_decimal_point
        self.m_cjfee_r = QLineEdit()
        self.m_cjfee_r.setPlaceholderText(_("fraction of the amount, e.g. 0.00002 (= 0.002 %)"))
        form.addRow(_("Relative fee (fraction)"), self.m_cjfee_r)
        self.m_cjfee_a = BTCAmountEdit(dp)          # amounts in Electrum's unit, as everywhere
        form.addRow(_("Absolute fee"), self.m_cjfee_a)
        self.m_txfee = BTCAmountEdit(dp)
        form.addRow(_("Miner-fee contribution"), self.m_txfee)
        self.m_minsize = BTCAmountEdit(dp)
        form.addRow(_("Minimum coinjoin"), self.m_minsize)
        self.m_autostart = QCheckBox(_("Start this maker whenever Electrum opens this wallet"))
        self.m_autostart.setObjectName("jm_maker_autostart")
        self.m_autostart.toggled.connect(self._autostart_toggled)
        form.addRow(self.m_autostart)
        self.m_start = QPushButton(_("Start maker"))
        self.m_start.clicked.connect(self.start)
        self.m_stop = QPushButton(_("Stop maker"))
        self.m_stop.clicked.connect(self.stop)
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
        v.addWidget(self.m_status)
        self.m_earnings = make_table([_("Date"), _("Coinjoin"), _("Amount"), _("Earned"),
                                      _("Confirmed")])
        self.m_earnings.setObjectName("jm_maker_earnings")
        self.m_earnings.cellDoubleClicked.connect(self._earning_clicked)
        v.addWidget(self.m_earnings, 1)
        h.addWidget(box, 2)
        self.load_settings()

    def load_settings(self) -> None:
        """The wallet's remembered offer (else the defaults) and its auto-start choice."""
        runner = self.plugin.runner
        st = runner.maker_settings(self.wallet)
        self.m_type.setCurrentIndex(max(0, self.m_type.findData(
            "absoffer" if str(st["ordertype"]).endswith("absoffer") else "reloffer")))
        self.m_cjfee_r.setText(str(st["cjfee_r"]))
        self.m_cjfee_a.setAmount(int(st["cjfee_a"]))
        self.m_txfee.setAmount(int(st["txfee"]))
        self.m_minsize.setAmount(int(st["minsize"]))
        self.m_autostart.blockSignals(True)
        self.m_autostart.setChecked(runner.maker_autostart(self.wallet))
        self.m_autostart.blockSignals(False)

    def _autostart_toggled(self, on: bool) -> None:
        self.plugin.runner.set_maker_autostart(self.wallet, on)

    def _earning_clicked(self, row: int, _col: int) -> None:
        item = self.m_earnings.item(row, 1)
        txid = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if txid:
            self.tab.show_tx(txid)

    @guarded
    def refresh(self) -> None:
        runner = self.plugin.runner
        session = self.plugin.session_for(self.wallet)
        maker = session.maker
        fmt = self.main_window.format_amount_and_units
        st = runner.maker_status(self.wallet)
        if maker is not None:
            offers = ", ".join(f"{o.get('ordertype')} {o.get('cjfee')} "
                               f"({fmt(int(o.get('minsize') or 0))} – "
                               f"{fmt(int(o.get('maxsize') or 0))})"
                               for o in st.get("offers") or [])
            text = _("Running as {nick}.\nOffers: {offers}\nActive sessions: {s}\nReserved coins: {r}\n"
                     "Coinjoins: {n}\nEarned: {earned}\nRefused takers: {ref}").format(
                nick=st.get("nick"), offers=offers or "–", s=len(st.get("sessions") or []),
                r=len(st.get("reserved_coins") or []), n=st.get("coinjoins", 0),
                earned=fmt(int(st.get("earned_total") or 0)), ref=st.get("refusals", 0))
        else:
            text = _("Not running.\nCoinjoins so far: {n}\nEarned so far: {earned}").format(
                n=st.get("coinjoins", 0), earned=fmt(int(st.get("earned_total") or 0)))
        if st.get("autostart_note"):
            text += "\n" + str(st["autostart_note"])
        self.m_status.setText(text)
        rows = list(reversed(runner.maker_history(self.wallet)))
        t = self.m_earnings
        t.setSortingEnabled(False)
        t.setRowCount(len(rows))
        for i, r in enumerate(rows):
            txid = str(r.get("txid", ""))
            cells = [time.strftime("%Y-%m-%d %H:%M", time.localtime(r.get("time", 0))),
                     txid[:16] + "…", fmt(int(r.get("cj_amount") or 0)),
                     fmt(int(r.get("earned") or 0)), _("yes") if r.get("confirmed") else _("no")]
            for j, cell in enumerate(cells):
                item = QTableWidgetItem(cell)
                if j == 1:
                    item.setData(Qt.ItemDataRole.UserRole, txid)
                t.setItem(i, j, item)
        busy_taker = session.role == Role.TAKER
        self.m_start.setEnabled(maker is None and not busy_taker)
        self.m_stop.setEnabled(maker is not None)

    @guarded
    def start(self) -> None:
        kind = self.m_type.currentData()
        settings: dict[str, Any] = {"ordertype": kind,
                                    "txfee": int(self.m_txfee.get_amount() or 0),
                                    "minsize": int(self.m_minsize.get_amount() or 0)}
        if kind == "reloffer":
            try:
                r = Decimal(self.m_cjfee_r.text().strip())
                if not 0 <= r < 1:
                    raise InvalidOperation
            except InvalidOperation:
                self.show_error(_("The relative fee is a fraction such as 0.00002 (= 0.002 %)."))
                return
            settings["cjfee_r"] = str(r)
        else:
            settings["cjfee_a"] = int(self.m_cjfee_a.get_amount() or 0)
        ok, password = self.tab.ask_password()
        if not ok:
            return
        self.m_start.setEnabled(False)
        self.m_status.setText(_("Starting the maker…"))

        def done(_st: Any) -> None:
            self.tab.status.set_channels_up(True)
            self.refresh()

        def failed(exc: BaseException) -> None:
            self.refresh()
            self.show_exc(exc)
        self.run_async(self.plugin.runner.start_maker(
            self.wallet, password, autostart=self.m_autostart.isChecked(), **settings), done, failed)

    @guarded
    def stop(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self._stop(), get_asyncio_loop())
        fut.add_done_callback(lambda f: self.tab.bridge.call.emit(self.refresh))

    async def _stop(self) -> bool:
        return bool(self.plugin.runner.stop_maker(self.wallet))
