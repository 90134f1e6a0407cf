"""The tab's status line: the daemon (probed, never started unasked; when none runs, whether
and which one will be started at the first use), the message channels and Tor, our nick; the
*Start daemon*, *Daemon log* and *Settings…* buttons."""
from __future__ import annotations

import os
from typing import Any, Optional

from electrum.i18n import _
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout

from electrum_joinmarket.gui import model
from electrum_joinmarket.gui.qt.common import Panel, friendly_error, guarded
from electrum_joinmarket.gui.qt.dialogs import SettingsDialog

__all__ = ["StatusPanel"]


class StatusPanel(Panel):
    """What we know of the daemon, its channels and Tor; updated by the other panels through
    :meth:`link_changed`, :meth:`set_channels_up`, :meth:`channels_live` and :meth:`nick_seen`."""

    def __init__(self, tab: Any):
        super().__init__(tab)
        self._daemon_text = _("JoinMarket daemon not checked yet")
        self._daemon_usable: Optional[bool] = None
        self._channels_up: Optional[bool] = None
        self._channels_live = ""                   # the daemon's latest report, while connecting
        self._tor_text = ""
        self._last_nick: Optional[str] = None
        status = QHBoxLayout(self)
        status.setContentsMargins(0, 0, 0, 0)
        self.daemon_label = QLabel()
        self.daemon_label.setObjectName("jm_daemon_status")
        self.daemon_label.setWordWrap(True)
        self.channels_label = QLabel()
        self.channels_label.setObjectName("jm_channels_status")
        self.channels_label.setWordWrap(True)
        self.tor_label = QLabel()
        self.tor_label.setObjectName("jm_tor_status")
        self.tor_label.setWordWrap(True)
        self.nick_label = QLabel()
        self.start_daemon_button = QPushButton(_("Start daemon"))
        self.start_daemon_button.clicked.connect(self.start_daemon)
        self.start_daemon_button.setVisible(False)
        self.settings_button = QPushButton(_("Settings…"))
        self.settings_button.clicked.connect(self.show_settings)
        self.log_button = QPushButton(_("Daemon log"))
        self.log_button.setObjectName("jm_daemon_log_button")
        self.log_button.clicked.connect(self.show_daemon_log)
        col = QVBoxLayout()
        col.addWidget(self.daemon_label)
        line = QHBoxLayout()
        line.addWidget(self.channels_label)
        line.addSpacing(20)
        line.addWidget(self.nick_label)
        line.addStretch(1)
        col.addLayout(line)
        col.addWidget(self.tor_label)
        status.addLayout(col, 1)
        status.addWidget(self.start_daemon_button)
        status.addWidget(self.log_button)
        status.addWidget(self.settings_button)

    # -- what the other panels tell us --------------------------------------------------------
    @property
    def daemon_usable(self) -> Optional[bool]:
        return self._daemon_usable

    def link_changed(self) -> None:
        """Take the daemon link's state, if there is a link (it may just have started one)."""
        link = self.plugin.runner.link
        if link is not None:
            self._daemon_text, self._daemon_usable = link.state.text, link.state.usable

    def set_channels_up(self, up: Optional[bool]) -> None:
        self._channels_up = up
        self.render()

    def channels_live(self, text: str) -> None:
        """The daemon's report on the channels while they come up ("" once they are up)."""
        self._channels_live = text
        self.render()

    def nick_seen(self, nick: str) -> None:
        self._last_nick = nick
        self._channels_up = True
        self._channels_live = ""
        self.render()

    # -- drawing ------------------------------------------------------------------------------
    def render(self) -> None:  # type: ignore[override]  # not QWidget.render(painter, ...)
        self.daemon_label.setText(self._daemon_text)
        self.start_daemon_button.setVisible(self._daemon_usable is False)
        if self._channels_live:
            self.channels_label.setText(_("Channels: {}").format(self._channels_live))
        else:
            try:
                chans = model.channel_summary(self.plugin.runner.chan_configs())
            except Exception as exc:
                chans = str(exc)
            up = {True: _("up"), False: _("down"),
                  None: _("not connected yet")}[self._channels_up]
            self.channels_label.setText(_("Channels: {} — {}").format(chans, up))
        self.tor_label.setText(self._tor_text)
        self.tor_label.setVisible(bool(self._tor_text))
        session = self.plugin.session_for(self.wallet)
        nick = None
        if session.taker is not None and getattr(session.taker, "client", None) is not None:
            nick = session.taker.client.nick
        elif session.maker is not None:
            nick = session.maker.nick
        nick = nick or self._last_nick
        self.nick_label.setText(_("Our nick: {}").format(nick or "–"))

    def refresh_tor(self) -> None:
        """Where Tor is (a local check, nothing leaves the machine), for the status line."""
        def done(report: dict) -> None:
            self._tor_text = model.tor_status_text(report)
            self.render()
        self.run_async(self.plugin.runner.channel_report(), done, lambda exc: None)

    @guarded
    def refresh(self) -> None:
        """Probe the daemon (never starts one) and show what we know of channels and nick."""
        from electrum_joinmarket.link.daemon import ProbeResult, probe
        self.refresh_tor()
        link = self.plugin.runner.link
        host, port = self.plugin.daemon_address
        if link is not None and link.state.usable:
            self._daemon_text, self._daemon_usable = link.state.text, True
            self.render()
            return

        def done(res: Any) -> None:
            addr = f"{host}:{port}"
            if res == ProbeResult.AMP:
                self._daemon_text = _("JoinMarket daemon running at {}").format(addr)
                if not authentication:
                    self._daemon_text += _(" — link NOT authenticated "
                                           "(plugins.joinmarket.daemon_authentication is off)")
                self._daemon_usable = True
            elif res == ProbeResult.NOT_AMP:
                self._daemon_text = _("Something else is listening at {} (not a JoinMarket "
                                      "daemon): change the port in settings").format(addr)
                self._daemon_usable = False
            else:
                self._daemon_text = self._no_daemon_text(addr)
                self._daemon_usable = False
                self._channels_up = None
            self.render()

        def failed(exc: BaseException) -> None:
            self._daemon_text, self._daemon_usable = friendly_error(exc), False
            self.render()
        authentication = bool(self.plugin.config.JM_DAEMON_AUTHENTICATION)
        self.run_async(probe(host, port, 3.0, authentication=authentication), done, failed)

    def _no_daemon_text(self, addr: str) -> str:
        """What the first view says when no daemon answers: whether (and which) one will be
        started at the first use, or why not."""
        from electrum_joinmarket.link.daemon import find_daemon_binary, in_process_available
        from electrum_joinmarket.settings import DaemonSettings
        d = DaemonSettings.from_config(self.plugin.config)
        if not d.autostart:
            return _("No JoinMarket daemon running at {}; starting one automatically is off in "
                     "settings: use Start daemon, or run jmdaemon yourself").format(addr)
        binary = find_daemon_binary(d.binary, d.electrum_dir)
        if binary:
            how = _("the jmdaemon binary {}").format(binary)
        elif d.in_process and in_process_available():
            how = _("a daemon inside Electrum")
        else:
            return _("No JoinMarket daemon running at {}, and none can be started: no jmdaemon "
                     "binary found (see Settings)").format(addr)
        return _("No JoinMarket daemon running at {} yet: Electrum will start {} when you "
                 "refresh the orderbook or start a coinjoin").format(addr, how)

    # -- buttons ------------------------------------------------------------------------------
    @guarded
    def show_daemon_log(self) -> None:
        """The daemon's log, when Electrum started it (else where to find it)."""
        from electrum.gui.qt.util import Buttons, CloseButton, WindowModalDialog
        link = self.plugin.runner.link
        info = link.status_dict() if link is not None else {}
        path = info.get("log")
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 200_000))
                text = f.read().decode("utf-8", "replace")
            head = _("Log of the jmdaemon Electrum started (pid {}): {}").format(info.get("pid"),
                                                                                path)
        elif info.get("status") == "in_process":
            text, head = "", _("The daemon runs inside Electrum: its lines are in Electrum's own "
                               "log (Electrum's logs folder, or the console with -v).")
        else:
            text, head = "", _("Electrum did not start the daemon it uses, so it has no log of "
                               "it: see the log in that daemon's own data folder (default "
                               "~/.jmdaemon).")
        d = WindowModalDialog(self.main_window, _("JoinMarket daemon log"))
        d.setObjectName("jm_daemon_log_dialog")
        d.setMinimumSize(820, 500)
        v = QVBoxLayout(d)
        lab = QLabel(head)
        lab.setObjectName("jm_daemon_log_path")
        lab.setWordWrap(True)
        lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        v.addWidget(lab)
        view = QPlainTextEdit()
        view.setObjectName("jm_daemon_log")
        view.setReadOnly(True)
        view.setPlainText(text)
        view.moveCursor(view.textCursor().MoveOperation.End)
        v.addWidget(view, 1)
        v.addLayout(Buttons(CloseButton(d)))
        d.exec()

    @guarded
    def start_daemon(self) -> None:
        from electrum_joinmarket.link.daemon import DaemonLink
        runner = self.plugin.runner
        if runner.link is None:
            runner.link = DaemonLink.from_config(self.plugin.config)
        link = runner.link

        async def go() -> Any:
            old = link.autostart
            link.autostart = True          # the user asked for it explicitly
            try:
                return await link.ensure()
            finally:
                link.autostart = old

        self.start_daemon_button.setEnabled(False)
        self._daemon_text = _("Starting the JoinMarket daemon…")
        self.render()

        def done(state: Any) -> None:
            self.start_daemon_button.setEnabled(True)
            self._daemon_text, self._daemon_usable = state.text, state.usable
            self.render()
            if not state.usable:
                self.show_error(state.text + "\n\n" + _(
                    "Install the jmdaemon binary next to Electrum's data folder, set its path in "
                    "JoinMarket settings, or run it yourself: jmdaemon --host {} --port {}"
                ).format(*self.plugin.daemon_address))

        def failed(exc: BaseException) -> None:
            self.start_daemon_button.setEnabled(True)
            self.show_exc(exc)
        self.run_async(go(), done, failed)

    @guarded
    def show_settings(self) -> None:
        if SettingsDialog(self.main_window, self.plugin).run():
            self.tab.form.load_settings()
            self.refresh()
