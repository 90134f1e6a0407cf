"""The running coinjoin: its stage, the makers, the time left, a log of the taker's progress
events, the pre-signing confirmation, the outcome with the hint for its failure kind, and the
*Cancel* / *Show transaction* / *Show in History* buttons. Every update arrives on the Qt
thread (the tab's bridge); stages are matched as :class:`~electrum_joinmarket.stages.TakerStage`
members."""
from __future__ import annotations

import time
from typing import Any, Optional

from electrum.i18n import _
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
)

from electrum_joinmarket.gui import model
from electrum_joinmarket.gui.qt.common import Panel
from electrum_joinmarket.gui.qt.dialogs import ConfirmDialog
from electrum_joinmarket.stages import TERMINAL_STAGES, OutcomeStatus, TakerStage

__all__ = ["ProgressPanel"]


class ProgressPanel(Panel):
    def __init__(self, tab: Any):
        super().__init__(tab)
        self._deadline: Optional[float] = None
        self.confirm_dialog: Optional[ConfirmDialog] = None
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        box = QGroupBox(_("Progress"))
        outer.addWidget(box)
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
        self.cancel_button.clicked.connect(self.tab.cancel_coinjoin)
        self.show_tx_button = QPushButton(_("Show transaction"))
        self.show_tx_button.setEnabled(False)
        self.show_tx_button.clicked.connect(lambda: self.tab.show_tx(self.tab.last_txid))
        self.history_button = QPushButton(_("Show in History"))
        self.history_button.setEnabled(False)
        self.history_button.clicked.connect(self.tab.show_in_history)
        row = QHBoxLayout()
        row.addWidget(self.cancel_button)
        row.addStretch(1)
        row.addWidget(self.history_button)
        row.addWidget(self.show_tx_button)
        grid.addLayout(row, 5, 0, 1, 2)
        grid.setRowStretch(3, 1)

    # -- a run --------------------------------------------------------------------------------
    def reset(self) -> None:
        self.log_view.clear()
        self._last_log: Optional[str] = None
        self.outcome_label.setText("")
        self.makers_label.setText("")
        self.time_label.setText("")
        self._deadline = None
        self.show_tx_button.setEnabled(False)
        self.history_button.setEnabled(False)

    def started(self, amount: int, destination: str) -> None:
        self.cancel_button.setEnabled(True)
        self.stage_label.setText(_("starting"))
        self.append_log(_("Starting a coinjoin of {} to {}").format(
            model.fmt_sats(amount) if amount else _("everything (sweep)"), destination))

    def finished(self) -> None:
        self._deadline = None
        self.time_label.setText("")
        self.cancel_button.setEnabled(False)

    def cancelling(self) -> None:
        self.append_log(_("Cancelling…"))
        self.cancel_button.setEnabled(False)

    def append_log(self, text: str) -> None:
        """One line per change: a message repeated while waiting is not written again."""
        if text == getattr(self, "_last_log", None):
            return
        self._last_log = text
        self.log_view.appendPlainText(time.strftime("%H:%M:%S ") + text)

    def tick(self) -> None:
        if self._deadline is not None:
            left = max(0, int(round(self._deadline - time.time())))
            self.time_label.setText(_("{} s").format(left))

    def on_progress(self, event: dict) -> None:
        """A taker progress event (Qt thread)."""
        stage = event.get("stage", "")
        self.stage_label.setText(str(stage))
        self.append_log(str(event.get("message", "")))
        status = self.tab.status
        if stage == TakerStage.CHANNELS:
            status.channels_live(str(event.get("message", "")))
        if event.get("nick"):
            status.nick_seen(event["nick"])
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

    def confirm(self, breakdown: dict) -> bool:
        """The pre-signing confirmation (Qt thread). True = sign and send."""
        self.stage_label.setText(_("waiting for your confirmation"))
        self._deadline = None
        d = ConfirmDialog(self.main_window, breakdown,
                          format_btc=self.main_window.format_amount_and_units)
        self.confirm_dialog = d
        try:
            ok = bool(d.exec())
        finally:
            self.confirm_dialog = None
        self.append_log(_("You confirmed the coinjoin.") if ok else _("You declined the coinjoin."))
        return ok

    def not_started(self, message: str) -> None:
        self.outcome_label.setText(_("Coinjoin not started: {}").format(message))
        self.stage_label.setText(_("failed"))

    def show_outcome(self, o: dict) -> Optional[str]:
        """Show a finished run's outcome; returns the text of a failure to put in an error box
        (None on success or cancellation)."""
        if o.get("status") == OutcomeStatus.SUCCESS:
            pct = o["total_cost"] * 100 / o["cj_amount"] if o.get("cj_amount") else 0
            self.outcome_label.setText(_(
                "Coinjoin sent: {txid}\n{amount} with {n} makers; maker fees {fees}, miner fee "
                "{miner} (your share {share}, {rate} sat/vB); total cost {cost} = {pct:.4f} %\n"
                "Anonymity set: {anon} equal outputs").format(
                rate=o.get("fee_rate"), anon=o.get("anonymity_set"),
                txid=o.get("txid"), amount=model.fmt_sats(o["cj_amount"]), n=len(o.get("makers") or []),
                fees=model.fmt_sats(sum((o.get("maker_fees") or {}).values())),
                miner=model.fmt_sats(o.get("miner_fee")), share=model.fmt_sats(o.get("taker_miner_fee")),
                cost=model.fmt_sats(o.get("total_cost")), pct=pct))
            self.show_tx_button.setEnabled(True)
            self.history_button.setEnabled(True)
            return None
        cancelled = o.get("status", OutcomeStatus.FAILED) == OutcomeStatus.CANCELLED
        head = _("Coinjoin cancelled") if cancelled else _("Coinjoin failed")
        text = f"{head}: {o.get('message', '')}\n{model.failure_hint(o.get('failure'))}"
        self.outcome_label.setText(text)
        return None if cancelled else text
