"""The coinjoin form: amount (or sweep), destination, counterparties, the fee limits, the miner
fee rate when Electrum has no estimate, the coins it spends. Validation is
:func:`electrum_joinmarket.gui.model.check_form` (the fee limits through the one parser); the
*Start coinjoin* button asks the tab to run it."""
from __future__ import annotations

from typing import Any, Optional

from electrum.gui.qt.amountedit import BTCAmountEdit
from electrum.i18n import _
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from electrum_joinmarket.gui import model
from electrum_joinmarket.gui.qt.common import Panel, guarded

__all__ = ["FormPanel"]


class FormPanel(Panel):
    """The widgets of the form and what they say (:meth:`form_input`, :meth:`amount`)."""

    def __init__(self, tab: Any):
        super().__init__(tab)
        c = self.plugin.config
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        box = QGroupBox(_("Send a coinjoin"))
        outer.addWidget(box)
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
        # one unit in the form: Electrum's (the absolute limit is an amount like any other)
        self.fee_abs_e = BTCAmountEdit(self.main_window.get_decimal_point)
        self.fee_abs_e.setObjectName("jm_fee_abs")
        if c.JM_MAX_CJ_FEE_ABS is not None:
            self.fee_abs_e.setAmount(int(c.JM_MAX_CJ_FEE_ABS))
        self.fee_rel_e = QLineEdit("" if c.JM_MAX_CJ_FEE_REL is None else
                                   model.fmt_percent_text(c.JM_MAX_CJ_FEE_REL))
        self.fee_rel_e.setObjectName("jm_fee_rel")
        self.fee_rel_e.setPlaceholderText(_("e.g. 0.4%"))
        self.fee_rel_e.setMaximumWidth(110)
        row = QHBoxLayout()
        row.addWidget(self.fee_abs_e)
        row.addWidget(QLabel(_("and")))
        row.addWidget(self.fee_rel_e)
        row.addWidget(QLabel(_("of the amount")))
        fee_label = QLabel(_("Refuse a maker whose fee is above both"))
        fee_label.setObjectName("jm_fee_rule")
        fee_label.setToolTip(_("A maker is refused only when its fee is above both limits: the "
                               "larger of the two is what one maker may cost you."))
        form.addRow(fee_label, row)
        self.feerate_spin = QDoubleSpinBox()
        self.feerate_spin.setRange(1, 1000)
        self.feerate_spin.setDecimals(1)
        self.feerate_spin.setSuffix(" sat/vB")
        self.feerate_spin.setValue(max(1.0, int(c.JM_FALLBACK_FEE_RATE) / 1000))
        self.feerate_spin.setToolTip(_("Used when the Electrum server gives no fee estimate; the "
                                       "rate is randomised upward by up to 20% like JoinMarket"))
        form.addRow(_("Miner fee (no estimate)"), self.feerate_spin)
        self.depth_combo = QComboBox()              # JoinMarket depth (docs/depths-and-schedules.md)
        self.depth_combo.setObjectName("jm_form_depth")
        self.depth_combo.addItem(_("the lowest that can pay"), None)
        for d in range(self.plugin.session_for(self.wallet).depths.count):
            self.depth_combo.addItem(str(d), d)
        self.depth_combo.setToolTip(_("The coinjoin spends coins of one depth only; its output "
                                      "to this wallet goes to the next depth"))
        self.depth_combo.currentIndexChanged.connect(lambda _i: self.update_coins_label())
        form.addRow(_("From depth"), self.depth_combo)
        self.coins_label = QLabel()
        form.addRow(_("Coins"), self.coins_label)
        self.start_button = QPushButton(_("Start coinjoin"))
        self.start_button.setObjectName("jm_start")
        self.start_button.clicked.connect(self.tab.start_coinjoin)
        form.addRow(self.start_button)
        self.update_coins_label()

    def chosen_depth(self) -> Optional[int]:
        """The depth chosen in the form (None: the runner picks the lowest that can pay). Not
        named ``depth``: that is QPaintDevice.depth() of every QWidget."""
        return self.depth_combo.currentData()

    def load_settings(self) -> None:
        """Take the (just saved) settings' fee limits, counterparties and fallback fee rate."""
        c = self.plugin.config
        if c.JM_MAX_CJ_FEE_ABS is not None:
            self.fee_abs_e.setAmount(int(c.JM_MAX_CJ_FEE_ABS))
        if c.JM_MAX_CJ_FEE_REL is not None:
            self.fee_rel_e.setText(model.fmt_percent_text(c.JM_MAX_CJ_FEE_REL))
        if c.JM_COUNTERPARTIES:
            self.n_spin.setValue(int(c.JM_COUNTERPARTIES))
        self.feerate_spin.setValue(max(1.0, int(c.JM_FALLBACK_FEE_RATE) / 1000))

    def set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        if not running:
            self.update_coins_label()

    # -- what the form says -------------------------------------------------------------------
    def amount(self) -> Optional[int]:
        """The amount the orderbook's fees are shown for: the entered amount, or for a sweep
        the spendable coins' total."""
        if self.sweep_cb.isChecked():
            coins = model.spendable_coins(self.wallet, self.main_window.get_manually_selected_coins())
            return sum(c.value_sats() for c in coins) or None
        amt = self.amount_e.get_amount()
        return int(amt) if amt else None

    def form_input(self) -> model.FormInput:
        return model.FormInput(
            amount=None if self.sweep_cb.isChecked() else self.amount_e.get_amount(),
            sweep=self.sweep_cb.isChecked(), destination=self.dest_e.text(),
            n_makers=int(self.n_spin.value()),
            max_fee_abs=("" if self.fee_abs_e.get_amount() is None
                         else str(self.fee_abs_e.get_amount())),
            max_fee_rel=self.fee_rel_e.text(),
            feerate_sat_vb=float(self.feerate_spin.value()),
            coins=self.main_window.get_manually_selected_coins(),
            offers=self.tab.orderbook.offers(),
            minimum_makers=min(int(self.plugin.config.JM_MINIMUM_MAKERS), int(self.n_spin.value())),
            script_type=self._script_type())

    def _script_type(self) -> str:
        from electrum_joinmarket.tx.coins import wallet_script_type
        from electrum_joinmarket.tx.errors import TxBuildError
        try:
            return wallet_script_type(self.wallet)
        except TxBuildError:
            return "p2wpkh"

    def update_coins_label(self) -> None:
        sel = self.main_window.get_manually_selected_coins()
        coins = model.spendable_coins(self.wallet, sel)
        total = sum(c.value_sats() for c in coins)
        fmt = self.main_window.format_amount_and_units
        depth = self.chosen_depth() if hasattr(self, "depth_combo") else None
        if sel is None and depth is not None:
            bal = self.plugin.session_for(self.wallet).depths.balances()[depth]
            self.coins_label.setText(_("confirmed coins of depth {} ({})").format(depth, fmt(bal)))
        elif sel is None:
            self.coins_label.setText(_("all confirmed coins ({}), one depth spent").format(fmt(total)))
        else:
            self.coins_label.setText(_("{} coins selected in the Coins tab ({})").format(
                len(coins), fmt(total)))

    # -- slots --------------------------------------------------------------------------------
    @guarded
    def fill_next_unused(self) -> None:
        addr = self.wallet.get_unused_address()
        if addr is None:
            self.show_error(_("This wallet has no unused receiving address left; create one in "
                              "the Receive tab."))
            return
        self.dest_e.setText(addr)

    @guarded
    def _amount_changed(self) -> None:
        self.tab.orderbook.render()

    @guarded
    def _sweep_toggled(self, on: bool) -> None:
        self.amount_e.setEnabled(not on)
        self.tab.orderbook.render()
