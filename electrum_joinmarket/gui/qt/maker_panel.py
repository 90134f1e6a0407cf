"""The maker view: the offer (relative or absolute fee, miner-fee contribution, minimum size),
*Start maker* / *Stop maker*, and what the running maker reports (offers, sessions, reserved
coins, coinjoins, earnings, refused takers)."""
from __future__ import annotations

import asyncio
from decimal import Decimal, InvalidOperation
from typing import Any

from electrum.i18n import _
from electrum.util import get_asyncio_loop
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from electrum_joinmarket.gui.qt.common import Panel, guarded
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
        v.addWidget(self.m_status, 1)
        h.addWidget(box, 1)

    @guarded
    def refresh(self) -> None:
        session = self.plugin.session_for(self.wallet)
        maker = session.maker
        fmt = self.main_window.format_amount_and_units
        if maker is not None:
            st = maker.status()
            offers = ", ".join(f"{o.get('ordertype')} {o.get('cjfee')} "
                               f"({o.get('minsize')}–{o.get('maxsize')} sat)"
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

    @guarded
    def start(self) -> None:
        kind = self.m_type.currentData()
        settings: dict[str, Any] = {"ordertype": kind, "txfee": int(self.m_txfee.value()),
                                    "minsize": int(self.m_minsize.value())}
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
            settings["cjfee_a"] = int(self.m_cjfee_a.value())
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
        self.run_async(self.plugin.runner.start_maker(self.wallet, password, **settings), done, failed)

    @guarded
    def stop(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self._stop(), get_asyncio_loop())
        fut.add_done_callback(lambda f: self.tab.bridge.call.emit(self.refresh))

    async def _stop(self) -> bool:
        return bool(self.plugin.runner.stop_maker(self.wallet))
