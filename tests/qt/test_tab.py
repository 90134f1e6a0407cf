"""The JoinMarket tab in Electrum's real main window (regtest wallet, offscreen Qt): it appears
with the plugin and goes away when the plugin is disabled; the settings dialog persists its
values; with no daemon reachable the user gets a clear message quickly and nothing hangs."""
from __future__ import annotations

import json
import time

import pytest

from devstack.procs import free_port

from .helpers import jm_tab

pytestmark = [pytest.mark.qt, pytest.mark.stack]


def test_tab_appears_with_plugin_and_goes_away_when_disabled(electrum_gui, jm_qt, open_window,
                                                              make_wallet, qtbot):
    wallet = make_wallet()
    window = open_window(wallet)
    tab = jm_tab(window)
    assert tab is not None and tab.objectName() == "joinmarket_tab"
    assert jm_qt.tab_for(window) is tab
    # the way Electrum's plugin dialog toggles a plugin: disable, then reload the windows
    plugins = electrum_gui.plugins
    plugins.disable("joinmarket")
    assert jm_tab(window) is None                       # removed from the open window at once
    electrum_gui.reload_windows()
    windows = [w for w in electrum_gui.windows if w.wallet is wallet]
    assert windows and all(jm_tab(w) is None for w in windows)
    plugins.enable("joinmarket")
    electrum_gui.reload_windows()
    windows = [w for w in electrum_gui.windows if w.wallet is wallet]
    assert windows and all(jm_tab(w) is not None for w in windows)
    new_plugin = plugins.get("joinmarket")
    assert new_plugin.tab_for(windows[-1]) is jm_tab(windows[-1])


def test_settings_dialog_persists(electrum_gui, jm_qt, open_window, make_wallet, modals, configure,
                                  electrum_node):
    configure(daemon_port=27183)                     # registered for cleanup
    configure(max_cj_fee_abs=None, max_cj_fee_rel=None, channels=None, daemon_autostart=None,
              daemon_binary=None, daemon_host=None, counterparties=None, minimum_makers=None,
              fallback_fee_rate=None, orderbook_wait=None, maker_timeout=None)
    window = open_window(make_wallet())

    def fill(d):
        d.port.setValue(27999)
        d.fee_abs.setText("25000")
        d.fee_rel.setText("0.3%")                       # the form's notation: stored as a fraction
        d.counterparties.setValue(5)
        d.ob_wait.setValue(30)
        ed = d.channels                                 # the channel editor, no JSON typed
        ed.irc_host.setText("irc.example.org")
        ed.irc_port.setValue(6697)
        ed.irc_ssl.setChecked(True)
        ed.irc_tor.setChecked(False)
        ed.irc_add.click()
        d.accept()
    m = modals(SettingsDialog=fill)
    assert jm_qt.settings_dialog(window) is True
    assert m.seen == ["SettingsDialog"]
    c = electrum_node.config
    assert c.JM_DAEMON_PORT == 27999 and c.JM_MAX_CJ_FEE_ABS == 25000
    assert c.JM_MAX_CJ_FEE_REL == "0.003" and c.JM_COUNTERPARTIES == 5 and c.JM_ORDERBOOK_WAIT == 30
    assert json.loads(c.JM_CHANNELS) == {"irc": [{"host": "irc.example.org", "port": 6697,
                                                  "channel": "joinmarket-pit", "usessl": True,
                                                  "tor": False}]}
    (irc,) = jm_qt.runner.chan_configs()
    assert (irc["host"], irc["port"], irc["usessl"], irc["socks5"]) == \
        ("irc.example.org", 6697, "true", "false")
    assert jm_qt.fee_limits().max_abs == 25000
    m.stop()

    def bad(d):
        d.fee_rel.setText("two percent")
        d.accept()
    m2 = modals(SettingsDialog=bad)
    # invalid input: an Electrum error box, the dialog stays; then the user cancels
    from PyQt6.QtCore import QTimer
    QTimer.singleShot(3000, lambda: [w.reject() for w in _visible("SettingsDialog")])
    assert jm_qt.settings_dialog(window) is False
    assert any("relative fee limit" in t for t in m2.messages)
    assert c.JM_MAX_CJ_FEE_REL == "0.003"


def _visible(name):
    from PyQt6.QtWidgets import QApplication
    return [w for w in QApplication.topLevelWidgets() if type(w).__name__ == name and w.isVisible()]


def test_no_daemon_reachable_clear_message_no_hang(jm_qt, open_window, make_wallet, modals,
                                                   configure, qtbot):
    port = free_port()
    configure(daemon_host="127.0.0.1", daemon_port=port, daemon_autostart=False,
              max_cj_fee_abs=20000, max_cj_fee_rel="0.002", counterparties=3, orderbook_wait=2)
    wallet = make_wallet(fund=[2_000_000], confirmations=5)   # PoDLE-able: the daemon is next
    window = open_window(wallet)
    tab = jm_tab(window)
    window.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: "No JoinMarket daemon" in tab.status.daemon_label.text(), timeout=10_000)
    assert tab.status.start_daemon_button.isVisible()
    m = modals()
    t0 = time.monotonic()
    qtbot.mouseClick(tab.orderbook.ob_refresh_button, qtbot_left())
    qtbot.waitUntil(lambda: len(m.messages) >= 1, timeout=15_000)
    assert time.monotonic() - t0 < 15
    assert "No JoinMarket daemon" in m.messages[0] and str(port) in m.messages[0]
    assert "autostart is off" in m.messages[0]
    assert "Traceback" not in m.messages[0]
    assert tab.orderbook.ob_refresh_button.isEnabled()

    # a coinjoin from the form: refused with the same clear message, the form usable again
    tab.form.amount_e.setAmount(500_000)
    tab.form.fill_next_unused()
    t0 = time.monotonic()
    qtbot.mouseClick(tab.form.start_button, qtbot_left())
    qtbot.waitUntil(lambda: len(m.messages) >= 2, timeout=15_000)
    assert time.monotonic() - t0 < 15
    assert "No JoinMarket daemon" in m.messages[1]
    qtbot.waitUntil(lambda: tab.form.start_button.isEnabled(), timeout=5_000)
    assert not tab.progress.cancel_button.isEnabled()
    assert jm_qt.session_for(wallet).role is None
    assert not any(wallet.is_frozen_coin(c) for c in wallet.get_utxos())


def test_first_view_says_what_will_start_one_log_line_per_change_and_daemon_log(
        jm_qt, open_window, make_wallet, modals, configure, qtbot, tmp_path):
    """Issue 14.13: with no daemon running the first view says which daemon Electrum will start
    at the first use (or that it will not: autostart off); the progress log writes a repeated
    message once; the Daemon log button says where the log is when Electrum started none."""
    port = free_port()
    fake = tmp_path / "jmdaemon"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    configure(daemon_host="127.0.0.1", daemon_port=port, daemon_autostart=True,
              daemon_binary=str(fake), daemon_in_process=False)
    wallet = make_wallet()
    window = open_window(wallet)
    tab = jm_tab(window)
    window.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: "No JoinMarket daemon" in tab.status.daemon_label.text(), timeout=10_000)
    assert tab.status.daemon_label.text() == (
        f"No JoinMarket daemon running at 127.0.0.1:{port} yet: Electrum will start the jmdaemon "
        f"binary {fake} when you refresh the orderbook or start a coinjoin")
    configure(daemon_autostart=False)
    tab.status.refresh()
    qtbot.waitUntil(lambda: "automatically is off" in tab.status.daemon_label.text(), timeout=10_000)

    tab.progress.reset()
    for text in ["3 offers from 3 makers"] * 5 + ["4 offers from 4 makers", "3 offers from 3 makers"]:
        tab.progress.append_log(text)
    lines = [line[9:] for line in tab.progress.log_view.toPlainText().splitlines()]
    assert lines == ["3 offers from 3 makers", "4 offers from 4 makers", "3 offers from 3 makers"]

    from PyQt6.QtWidgets import QLabel
    heads: list = []

    def seen(d):
        heads.append(d.findChild(QLabel, "jm_daemon_log_path").text())
        d.accept()
    m = modals(WindowModalDialog=seen)
    qtbot.mouseClick(tab.status.log_button, qtbot_left())
    qtbot.waitUntil(lambda: bool(heads), timeout=10_000)
    assert heads == ["Electrum did not start the daemon it uses, so it has no log of it: see the "
                     "log in that daemon's own data folder (default ~/.jmdaemon)."]
    m.stop()


def qtbot_left():
    from PyQt6.QtCore import Qt
    return Qt.MouseButton.LeftButton
