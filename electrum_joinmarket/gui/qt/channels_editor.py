"""The message-channel editor of the settings dialog (issue 14.13): presets per network instead of
raw JSON, over the channel model :class:`jmcore.channels.ChannelSettings` (its editor API does
every change; this widget only shows it and calls it).

* **Directory nodes**: the network's defaults (the live network's, as the reference
  implementations ship them), with additions and removals; or only the ones listed; or none
  (IRC only). Each row says where it comes from (default / added / configured).
* **IRC**: the reference's IRC pit (hackint, over Tor) on or off, and custom servers.
* **Local test network**: directories reached over plain TCP (never for real use).
* An older setting (a raw JSON list) is shown as such, with a button that resets it.

:meth:`ChannelsEditor.settings` is the edited ChannelSettings; :meth:`setting_value` the JSON
stored in ``plugins.joinmarket.channels`` (None = the defaults). Qt runs on the GUI thread only.
"""
from __future__ import annotations

import json
from typing import Any, Optional

from electrum.i18n import _
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from jmcore.channels import (
    HACKINT_IRC,
    ChannelConfigError,
    ChannelSettings,
    IRCServer,
    default_directories,
    normalize_network,
)

__all__ = ["ChannelsEditor", "PRESET_DEFAULTS", "PRESET_ONLY", "PRESET_NONE"]

PRESET_DEFAULTS, PRESET_ONLY, PRESET_NONE = "defaults", "only", "none"
ROLE = Qt.ItemDataRole.UserRole
SOURCE_TEXT = {"default": _("default"), "added": _("added"), "configured": _("configured")}


class ChannelsEditor(QWidget):
    """Edits a :class:`ChannelSettings` for ``network``; emits ``changed`` after every edit."""

    changed = pyqtSignal()

    def __init__(self, setting: Any, network: str, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.network = normalize_network(network)
        self.error: Optional[str] = None      # the stored setting is invalid (blocks saving)
        self.notice: Optional[str] = None     # the last edit was refused (shown only)
        try:
            self._settings = ChannelSettings.from_setting(setting)
        except ChannelConfigError as exc:        # shown, and editing starts from the defaults
            self._settings = ChannelSettings()
            self.error = str(exc)
        self._building = False
        vbox = QVBoxLayout(self)
        vbox.setContentsMargins(0, 0, 0, 0)

        self.legacy = QLabel()
        self.legacy.setObjectName("jm_channels_legacy")
        self.legacy.setWordWrap(True)
        self.reset_button = QPushButton(_("Reset to the defaults"))
        self.reset_button.setObjectName("jm_channels_reset")
        self.reset_button.clicked.connect(self._reset)
        row = QHBoxLayout()
        row.addWidget(self.legacy, 1)
        row.addWidget(self.reset_button)
        vbox.addLayout(row)

        row = QHBoxLayout()
        row.addWidget(QLabel(_("Directory nodes")))
        self.preset = QComboBox()
        self.preset.setObjectName("jm_channels_preset")
        n = len(default_directories(self.network))
        self.preset.addItem(_("the {} network's defaults ({})").format(self.network, n)
                            if n else _("the {} network's defaults (none)").format(self.network),
                            PRESET_DEFAULTS)
        self.preset.addItem(_("only the ones listed"), PRESET_ONLY)
        self.preset.addItem(_("none (IRC only)"), PRESET_NONE)
        self.preset.currentIndexChanged.connect(self._preset_changed)
        row.addWidget(self.preset, 1)
        vbox.addLayout(row)

        self.directories = QListWidget()
        self.directories.setObjectName("jm_channels_directories")
        self.directories.setMaximumHeight(120)
        vbox.addWidget(self.directories)
        row = QHBoxLayout()
        self.new_directory = QLineEdit()
        self.new_directory.setObjectName("jm_channels_new_directory")
        self.new_directory.setPlaceholderText(_("<56 characters>.onion:5222"))
        self.add_button = QPushButton(_("Add"))
        self.add_button.setObjectName("jm_channels_add")
        self.add_button.clicked.connect(self._add_directory)
        self.remove_button = QPushButton(_("Remove selected"))
        self.remove_button.setObjectName("jm_channels_remove")
        self.remove_button.clicked.connect(self._remove_directory)
        row.addWidget(self.new_directory, 1)
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        vbox.addLayout(row)

        self.hackint = QCheckBox(_("Also the reference implementation's IRC pit (hackint, over "
                                   "Tor)"))
        self.hackint.setObjectName("jm_channels_hackint")
        self.hackint.toggled.connect(self._hackint_toggled)
        vbox.addWidget(self.hackint)
        self.irc_list = QListWidget()
        self.irc_list.setObjectName("jm_channels_irc")
        self.irc_list.setMaximumHeight(70)
        vbox.addWidget(self.irc_list)
        row = QHBoxLayout()
        self.irc_host = QLineEdit()
        self.irc_host.setObjectName("jm_channels_irc_host")
        self.irc_host.setPlaceholderText(_("IRC server host"))
        self.irc_port = QSpinBox()
        self.irc_port.setObjectName("jm_channels_irc_port")
        self.irc_port.setRange(1, 65535)
        self.irc_port.setValue(6697)
        self.irc_channel = QLineEdit("joinmarket-pit")
        self.irc_channel.setObjectName("jm_channels_irc_channel")
        self.irc_ssl = QCheckBox(_("TLS"))
        self.irc_ssl.setChecked(True)
        self.irc_tor = QCheckBox(_("via Tor"))
        self.irc_tor.setChecked(True)
        self.irc_add = QPushButton(_("Add IRC"))
        self.irc_add.setObjectName("jm_channels_irc_add")
        self.irc_add.clicked.connect(self._add_irc)
        self.irc_remove = QPushButton(_("Remove"))
        self.irc_remove.clicked.connect(self._remove_irc)
        for w in (self.irc_host, self.irc_port, self.irc_channel, self.irc_ssl, self.irc_tor,
                  self.irc_add, self.irc_remove):
            row.addWidget(w, 1 if w is self.irc_host else 0)
        vbox.addLayout(row)
        suffix = {"mainnet": "", "testnet": "-test", "regtest": "-test", "signet": "-sig"}[self.network]
        self.irc_note = QLabel(_("On {} the channel gets the suffix “{}” (e.g. #joinmarket-pit{})")
                               .format(self.network, suffix, suffix) if suffix else "")
        self.irc_note.setWordWrap(True)
        vbox.addWidget(self.irc_note)

        self.test_mode = QCheckBox(_("Local test network: directories over plain TCP (never for "
                                     "real coins)"))
        self.test_mode.setObjectName("jm_channels_test_mode")
        self.test_mode.toggled.connect(self._test_mode_toggled)
        vbox.addWidget(self.test_mode)
        self.summary = QLabel()
        self.summary.setObjectName("jm_channels_summary")
        self.summary.setWordWrap(True)
        vbox.addWidget(self.summary)
        self._refresh()

    # ------------------------------------------------------------------ the result
    def settings(self) -> ChannelSettings:
        return self._settings

    def setting_value(self) -> Optional[str]:
        """JSON for ``plugins.joinmarket.channels`` (None: everything at the defaults)."""
        if self._settings.raw is not None:
            return json.dumps([dict(c) for c in self._settings.raw])
        value = self._settings.to_setting()
        return None if value is None else json.dumps(value)

    # ------------------------------------------------------------------ edits
    def _apply(self, new: ChannelSettings) -> None:
        self._settings = new
        self.error = self.notice = None
        self._refresh()
        self.changed.emit()

    def _fail(self, exc: Exception) -> None:
        self.notice = str(exc)
        self._refresh()

    def _reset(self) -> None:
        self._apply(ChannelSettings())

    def _preset_changed(self) -> None:
        if self._building:
            return
        preset = self.preset.currentData()
        s = self._settings
        if preset == PRESET_DEFAULTS:
            new = ChannelSettings(irc=s.irc, socks5=s.socks5, tor_control=s.tor_control,
                                  tor_control_password=s.tor_control_password,
                                  test_mode=s.test_mode)
        elif preset == PRESET_ONLY:
            shown = [d for d, _src in s.effective_directories(self.network)]
            new = s.with_directories(shown)
            new = ChannelSettings(directories=new.directories, irc=s.irc, socks5=s.socks5,
                                  tor_control=s.tor_control,
                                  tor_control_password=s.tor_control_password,
                                  test_mode=s.test_mode)
        else:
            new = ChannelSettings(onion=False, irc=s.irc, socks5=s.socks5,
                                  tor_control=s.tor_control,
                                  tor_control_password=s.tor_control_password,
                                  test_mode=s.test_mode)
        self._apply(new)

    def _add_directory(self) -> None:
        text = self.new_directory.text().strip()
        if not text:
            return
        try:
            new = self._settings.with_directory_added(text)
            if not new.onion:
                new = ChannelSettings(**{**_fields(new), "onion": True})
        except ChannelConfigError as exc:
            self._fail(exc)
            return
        self.new_directory.clear()
        self._apply(new)

    def _remove_directory(self) -> None:
        item = self.directories.currentItem()
        if item is None:
            return
        self._apply(self._settings.with_directory_removed(item.data(ROLE)))

    def _hackint_toggled(self, on: bool) -> None:
        if self._building:
            return
        s = self._settings
        self._apply(s.with_irc_server(HACKINT_IRC) if on
                    else s.without_irc_server(HACKINT_IRC.host, HACKINT_IRC.port))

    def _add_irc(self) -> None:
        host = self.irc_host.text().strip()
        if not host:
            self._fail(ValueError(_("Enter the IRC server's host name")))
            return
        server = IRCServer(host=host, port=int(self.irc_port.value()),
                           channel=self.irc_channel.text().strip().lstrip("#") or "joinmarket-pit",
                           usessl=self.irc_ssl.isChecked(), tor=self.irc_tor.isChecked())
        self.irc_host.clear()
        self._apply(self._settings.with_irc_server(server))

    def _remove_irc(self) -> None:
        item = self.irc_list.currentItem()
        if item is None:
            return
        host, port = item.data(ROLE)
        self._apply(self._settings.without_irc_server(host, port))

    def _test_mode_toggled(self, on: bool) -> None:
        if self._building:
            return
        s = self._settings
        if s.raw is not None:
            s = ChannelSettings()
        # a directory written for one mode is not valid in the other: start from the defaults
        self._apply(ChannelSettings(onion=s.onion, irc=s.irc, socks5=s.socks5,
                                    tor_control=s.tor_control,
                                    tor_control_password=s.tor_control_password, test_mode=on))

    # ------------------------------------------------------------------ view
    def _refresh(self) -> None:
        self._building = True
        try:
            s = self._settings
            legacy = s.raw is not None
            self.legacy.setText(_("An older channel list is set (raw JSON): it is used as it "
                                  "is. Reset it to edit the channels here.") if legacy else "")
            self.legacy.setVisible(legacy)
            for w in (self.preset, self.directories, self.new_directory, self.add_button,
                      self.remove_button, self.hackint, self.irc_list, self.irc_host,
                      self.irc_port, self.irc_channel, self.irc_ssl, self.irc_tor, self.irc_add,
                      self.irc_remove, self.test_mode):
                w.setEnabled(not legacy)
            preset = (PRESET_NONE if not s.onion else
                      PRESET_ONLY if s.directories is not None else PRESET_DEFAULTS)
            self.preset.setCurrentIndex(self.preset.findData(preset))
            self.directories.clear()
            if not legacy:
                for loc, source in s.effective_directories(self.network):
                    item = QListWidgetItem(f"{loc}   ({SOURCE_TEXT.get(source, source)})")
                    item.setData(ROLE, loc)
                    self.directories.addItem(item)
                for loc in s.remove_directories:
                    if loc in default_directories(self.network):
                        item = QListWidgetItem(f"{loc}   ({_('default, removed')})")
                        item.setData(ROLE, loc)
                        item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
                        self.directories.addItem(item)
            self.hackint.setChecked(any((x.host, x.port) == (HACKINT_IRC.host, HACKINT_IRC.port)
                                        for x in s.irc))
            self.irc_list.clear()
            for x in s.irc:
                item = QListWidgetItem(f"{x.host}:{x.port} #{x.channel}"
                                       + (" TLS" if x.usessl else "") + (" via Tor" if x.tor else ""))
                item.setData(ROLE, (x.host, x.port))
                self.irc_list.addItem(item)
            self.test_mode.setChecked(s.test_mode)
            self.summary.setText(self._summary())
        finally:
            self._building = False

    def _summary(self) -> str:
        if self.error or self.notice:
            return str(self.error or self.notice)
        s = self._settings
        if s.raw is not None:
            return _("{} channel(s) from the older setting").format(len(s.raw))
        dirs = s.effective_directories(self.network)
        parts = []
        if dirs:
            parts.append(_("{} directory node(s)").format(len(dirs))
                         + (_(" over plain TCP (test)") if s.test_mode else _(" over Tor")))
        if s.irc:
            parts.append(_("{} IRC server(s)").format(len(s.irc)))
        if not parts:
            return _("No channel for {}: add a directory node or an IRC server (neither reference "
                     "implementation ships defaults for this network)").format(self.network)
        return _("Will use: ") + ", ".join(parts)


def _fields(s: ChannelSettings) -> dict:
    return {k: getattr(s, k) for k in ("directories", "add_directories", "remove_directories",
                                       "onion", "irc", "socks5", "tor_control",
                                       "tor_control_password", "test_mode")}
