"""Dialogs of the JoinMarket tab: the pre-signing confirmation and the plugin settings.

Built from Electrum's own Qt helpers (``WindowModalDialog``, ``Buttons``, ``OkButton``,
``CancelButton``) through the Qt binding Electrum uses (PyQt6 on 4.8).
"""
from __future__ import annotations

import json
from typing import Any, Optional

from electrum.gui.qt.util import Buttons, CancelButton, OkButton, WindowModalDialog, WWLabel
from electrum.i18n import _
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from electrum_joinmarket.gui.model import fmt_sats
from electrum_joinmarket.market.limits import format_max_rel, parse_max_abs, parse_max_rel
from electrum_joinmarket.settings import set_settings

__all__ = ["ConfirmDialog", "SettingsDialog", "sats_of"]


def sats_of(text: str) -> int:
    """The satoshi figure at the start of a label written by :func:`fmt_sats` ("12 345 sat …")."""
    return int(text.split(" sat")[0].replace(" ", "").replace("\u202f", ""))


class ConfirmDialog(WindowModalDialog):
    """Shown before anything is signed: exactly what the planned transaction pays.

    The figures come from the taker's breakdown of the transaction it is about to sign (the same
    plan it checks before signing), so they are the figures the chain will show."""

    def __init__(self, parent: QWidget, breakdown: dict, format_btc: Any = None):
        super().__init__(parent, _("Confirm JoinMarket coinjoin"))
        self.breakdown = dict(breakdown)
        self.setMinimumWidth(520)
        b = self.breakdown
        amount = int(b["cj_amount"])

        def pct(x: int) -> str:
            return f"{x * 100 / amount:.4f} %" if amount else "–"

        def label(name: str, sats: int, extra: str = "") -> QLabel:
            text = fmt_sats(sats)
            if format_btc is not None:
                text += f"  ({format_btc(sats)})"
            if extra:
                text += f"  {extra}"
            lab = QLabel(text)
            lab.setObjectName(name)
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            return lab

        vbox = QVBoxLayout(self)
        vbox.addWidget(WWLabel(_("Check what this coinjoin costs before your wallet signs it. "
                                 "Nothing has been signed or sent yet.")))
        form = QFormLayout()
        form.addRow(_("Amount sent"), label("jm_cj_amount", amount))
        dest = QLabel(str(b.get("destination", "")))
        dest.setObjectName("jm_destination")
        dest.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(_("To"), dest)
        vbox.addLayout(form)

        fees = dict(b.get("maker_fees") or {})
        box = QGroupBox(_("Fees paid to {} makers").format(len(fees)))
        bl = QVBoxLayout(box)
        self.fee_table = t = QTableWidget(len(fees), 3)
        t.setObjectName("jm_maker_fees")
        t.setHorizontalHeaderLabels([_("Maker"), _("Fee"), _("% of amount")])
        t.verticalHeader().setVisible(False)
        t.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for row, (nick, fee) in enumerate(sorted(fees.items())):
            t.setItem(row, 0, QTableWidgetItem(nick))
            t.setItem(row, 1, QTableWidgetItem(fmt_sats(int(fee))))
            t.setItem(row, 2, QTableWidgetItem(pct(int(fee))))
        t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        t.setMaximumHeight(40 + 30 * max(1, len(fees)))
        bl.addWidget(t)
        vbox.addWidget(box)

        form2 = QFormLayout()
        form2.addRow(_("Maker fees, total"), label("jm_maker_fees_total", sum(map(int, fees.values()))))
        form2.addRow(_("Miner fee of the whole transaction"), label("jm_miner_fee", int(b["miner_fee"])))
        form2.addRow(_("Your share of the miner fee"), label("jm_taker_miner_fee", int(b["taker_miner_fee"])))
        total = int(b["total_cost"])
        total_lab = label("jm_total_cost", total, f"= {float(b.get('total_cost_percent', 0)):.4f} %")
        f = total_lab.font()
        f.setBold(True)
        total_lab.setFont(f)
        form2.addRow(_("Total cost to you"), total_lab)
        if b.get("change") is not None:
            form2.addRow(_("Your change"), label("jm_change", int(b["change"])))
        if b.get("anonymity_set") is not None:
            anon = WWLabel(_("{} equal outputs of {}, yours among them").format(
                int(b["anonymity_set"]), fmt_sats(amount)))
            anon.setObjectName("jm_anonymity_set")
            form2.addRow(_("Anonymity set"), anon)
        if b.get("fee_rate") is not None:
            rate = QLabel(_("{:.1f} sat/vB ({} vbytes)").format(float(b["fee_rate"]),
                                                                 int(b.get("vsize") or 0)))
            rate.setObjectName("jm_fee_rate")
            form2.addRow(_("Miner fee rate"), rate)
        vbox.addLayout(form2)
        self.warning_label: Optional[QLabel] = None
        if b.get("script_type_warning"):
            w = WWLabel(_("Warning: {}.").format(b["script_type_warning"]))
            w.setObjectName("jm_script_warning")
            w.setStyleSheet("color: #c0392b; font-weight: bold")
            vbox.addWidget(w)
            self.warning_label = w
        self.ok_button = OkButton(self, _("Sign and send"))
        self.cancel_button = CancelButton(self)
        vbox.addLayout(Buttons(self.cancel_button, self.ok_button))
        self.cancel_button.setFocus()

    def figures(self) -> dict:
        """What the dialog shows, read back from its widgets (tests compare this to the chain)."""
        def get(name: str) -> int:
            return sats_of(self.findChild(QLabel, name).text())
        fees = {self.fee_table.item(r, 0).text(): sats_of(self.fee_table.item(r, 1).text())
                for r in range(self.fee_table.rowCount())}
        out = {"cj_amount": get("jm_cj_amount"), "maker_fees": fees,
               "miner_fee": get("jm_miner_fee"), "taker_miner_fee": get("jm_taker_miner_fee"),
               "total_cost": get("jm_total_cost")}
        anon = self.findChild(QLabel, "jm_anonymity_set")
        if anon is not None:
            out["anonymity_set"] = int(anon.text().split()[0])
        rate = self.findChild(QLabel, "jm_fee_rate")
        if rate is not None:
            out["fee_rate"] = float(rate.text().split()[0])
        out["script_type_warning"] = (self.warning_label.text()
                                      if self.warning_label is not None else None)
        return out


class SettingsDialog(WindowModalDialog):
    """Plugin settings: the daemon and how to launch it, channels and Tor, default fee limits and
    counterparties, orderbook and maker waits. Saved as Electrum config keys
    ``plugins.joinmarket.*``."""

    def __init__(self, parent: QWidget, plugin: Any):
        super().__init__(parent, _("JoinMarket settings"))
        self.plugin = plugin
        c = plugin.config
        self.setMinimumWidth(560)
        vbox = QVBoxLayout(self)

        # -- daemon
        box = QGroupBox(_("JoinMarket daemon (jmdaemon)"))
        form = QFormLayout(box)
        self.host = QLineEdit(str(c.JM_DAEMON_HOST))
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(int(c.JM_DAEMON_PORT))
        hp = QHBoxLayout()
        hp.addWidget(self.host)
        hp.addWidget(QLabel(":"))
        hp.addWidget(self.port)
        form.addRow(_("Address"), hp)
        self.autostart = QCheckBox(_("Start the daemon when none runs (binary, else in-process)"))
        self.autostart.setChecked(bool(c.JM_DAEMON_AUTOSTART))
        form.addRow(self.autostart)
        self.binary = QLineEdit(str(c.JM_DAEMON_BINARY or ""))
        self.binary.setPlaceholderText(_("auto: $JMDAEMON_BINARY, ~/.electrum/jmdaemon, PATH"))
        form.addRow(_("Daemon binary"), self.binary)
        how = WWLabel(_("To run it yourself: <code>jmdaemon --host 127.0.0.1 --port {}</code> "
                        "(it holds no keys; Electrum signs everything).").format(int(c.JM_DAEMON_PORT)))
        how.setTextFormat(Qt.TextFormat.RichText)
        form.addRow(how)
        vbox.addWidget(box)

        # -- channels and Tor
        box = QGroupBox(_("Message channels and Tor"))
        form = QFormLayout(box)
        from electrum_joinmarket.gui.qt.channels_editor import ChannelsEditor
        from electrum_joinmarket.runner import jm_network_name
        self.channels = ChannelsEditor(c.JM_CHANNELS, jm_network_name())
        form.addRow(self.channels)
        chosen = self.channels.settings()
        self.socks = QLineEdit(chosen.socks5 or "")
        self.socks.setObjectName("jm_tor_socks")
        self.socks.setPlaceholderText(_("automatic: Electrum's Tor proxy, else 127.0.0.1:9050, "
                                        "else 9150 (Tor Browser)"))
        self.control = QLineEdit(chosen.tor_control or "")
        self.control.setPlaceholderText(_("automatic (next to the SOCKS port)"))
        form.addRow(_("Tor SOCKS5 proxy"), self.socks)
        form.addRow(_("Tor control port"), self.control)
        vbox.addWidget(box)

        # -- coinjoin defaults
        box = QGroupBox(_("Coinjoin defaults"))
        form = QFormLayout(box)
        self.fee_abs = QLineEdit("" if c.JM_MAX_CJ_FEE_ABS is None else str(c.JM_MAX_CJ_FEE_ABS))
        self.fee_abs.setPlaceholderText(_("e.g. 20000 (sats per maker)"))
        self.fee_rel = QLineEdit("" if c.JM_MAX_CJ_FEE_REL is None else str(c.JM_MAX_CJ_FEE_REL))
        self.fee_rel.setPlaceholderText(_("e.g. 0.004 or 0.4%"))
        form.addRow(_("Max fee per maker (sats)"), self.fee_abs)
        form.addRow(_("Max fee per maker (fraction)"), self.fee_rel)
        form.addRow(WWLabel(_("A maker is refused only when its fee is above both limits.")))
        self.counterparties = QSpinBox()
        self.counterparties.setRange(0, 20)
        self.counterparties.setSpecialValueText(_("random 8–10"))
        self.counterparties.setValue(int(c.JM_COUNTERPARTIES or 0))
        form.addRow(_("Counterparties"), self.counterparties)
        self.minimum = QSpinBox()
        self.minimum.setRange(1, 20)
        self.minimum.setValue(int(c.JM_MINIMUM_MAKERS))
        form.addRow(_("Minimum makers"), self.minimum)
        self.fallback = QSpinBox()
        self.fallback.setRange(1, 1000)
        self.fallback.setValue(max(1, int(c.JM_FALLBACK_FEE_RATE) // 1000))
        self.fallback.setSuffix(" sat/vB")
        form.addRow(_("Miner fee when no estimate"), self.fallback)
        self.ob_wait = QSpinBox()
        self.ob_wait.setRange(1, 600)
        self.ob_wait.setSuffix(" s")
        self.ob_wait.setValue(int(c.JM_ORDERBOOK_WAIT))
        form.addRow(_("Orderbook wait"), self.ob_wait)
        self.maker_timeout = QSpinBox()
        self.maker_timeout.setRange(5, 600)
        self.maker_timeout.setSuffix(" s")
        self.maker_timeout.setValue(int(c.JM_MAKER_TIMEOUT))
        form.addRow(_("Maker answer timeout"), self.maker_timeout)
        vbox.addWidget(box)
        vbox.addLayout(Buttons(CancelButton(self), OkButton(self, _("Save"))))

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _hostport(text: str, what: str) -> tuple[str, int]:
        host, sep, port = text.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(_("{} must look like host:port").format(what))
        return host, int(port)

    # -- save ------------------------------------------------------------------------------------
    def values(self) -> dict:
        """Validated settings (raises ValueError with a message for the user)."""
        out: dict = {}
        host = self.host.text().strip()
        if not host:
            raise ValueError(_("Enter the daemon host, e.g. 127.0.0.1"))
        out["daemon_host"], out["daemon_port"] = host, int(self.port.value())
        out["daemon_autostart"] = bool(self.autostart.isChecked())
        out["daemon_binary"] = self.binary.text().strip() or None
        if self.channels.error:
            raise ValueError(_("The stored channel setting is invalid ({}): fix it, or reset it, "
                               "in the channel editor").format(self.channels.error))
        chosen = self.channels.settings()
        pins: dict[str, Optional[str]] = {}
        for key, field, what in (("socks5", self.socks, _("The Tor SOCKS5 proxy")),
                                 ("tor_control", self.control, _("The Tor control port"))):
            text = field.text().strip()
            if text:
                h, p = self._hostport(text, what)
                pins[key] = f"{h}:{p}"
            else:
                pins[key] = None
        if chosen.raw is None:
            import dataclasses
            chosen = dataclasses.replace(chosen, socks5=pins["socks5"],
                                         tor_control=pins["tor_control"])
            value = chosen.to_setting()
            out["channels"] = None if value is None else json.dumps(value)
        else:
            out["channels"] = self.channels.setting_value()
        fa, fr = self.fee_abs.text().strip(), self.fee_rel.text().strip()
        # the one parser (FeeLimitError is a ValueError whose message says what to type)
        out["max_cj_fee_abs"] = parse_max_abs(fa) if fa else None
        out["max_cj_fee_rel"] = format_max_rel(parse_max_rel(fr)) if fr else None
        out["counterparties"] = int(self.counterparties.value()) or None
        out["minimum_makers"] = int(self.minimum.value())
        out["fallback_fee_rate"] = int(self.fallback.value()) * 1000
        out["orderbook_wait"] = int(self.ob_wait.value())
        out["maker_timeout"] = int(self.maker_timeout.value())
        return out

    def save(self) -> bool:
        """Validate and write the settings; False (after telling the user why) if invalid."""
        try:
            vals = self.values()
        except ValueError as exc:
            self.show_error(str(exc))
            return False
        # the runner compares the daemon settings at its next use: a change applies then (the
        # daemon this Electrum started for the old ones is stopped), or says what still uses it
        set_settings(self.plugin.config, vals)
        return True

    def run(self) -> bool:
        while self.exec():
            if self.save():
                return True
        return False
