"""What a user sees opening the JoinMarket tab on mainnet with Tor Browser running and no
settings: the tab finds Tor Browser's SOCKS port (9150) by itself, starts the daemon when asked
for the orderbook, and shows each step of reaching the 7 default directory nodes through it.

Tor Browser is played by a client of the private Tor network (devstack.tor) on 127.0.0.1:9150 /
9151, so the real mainnet directories are unreachable here (Tor: "descriptor not found"): the
test pins what the user reads at each step and that nothing but Tor's SOCKS port is contacted.
The wallet is the stack's regtest wallet; the plugin's network is set to mainnet (its channel
defaults, Tor discovery and JMInit are what run on mainnet)."""
from __future__ import annotations

import sys

import pytest

from devstack.procs import free_port, port_open
from devstack.tor import tcp_connections
from tests.qt.helpers import jm_tab

pytestmark = [pytest.mark.qt, pytest.mark.stack, pytest.mark.e2e, pytest.mark.tor]


def test_c9_mainnet_tab_with_tor_browser_and_no_settings(tornet, jm_qt, open_window, make_wallet,
                                                      configure, qtbot, monkeypatch, tmp_path,
                                                      modals):
    if port_open(9050):
        pytest.fail("something listens on 127.0.0.1:9050: this test plays a user whose only Tor "
                    "is Tor Browser")
    browser = tornet.add_client("torbrowser", socks_port=9150, control_port=9151)
    import electrum_joinmarket.runner as runner_mod
    monkeypatch.setattr(runner_mod, "jm_network_name", lambda: "mainnet")
    configure(daemon_host="127.0.0.1", daemon_port=free_port(), daemon_autostart=True,
              daemon_binary=str(__import__("pathlib").Path(sys.executable).parent / "jmdaemon"),
              daemon_datadir=str(tmp_path / "jmdaemon"), channels=None, orderbook_wait=5,
              max_cj_fee_abs=20000, max_cj_fee_rel="0.002",
              # every directory is unreachable here; the 90 s default would only be waited out
              channels_timeout=30)
    window = open_window(make_wallet())
    tab = jm_tab(window)
    window.tabs.setCurrentWidget(tab)
    lines: list[str] = []
    last: dict = {}

    def record():
        for name, label in (("daemon", tab.status.daemon_label), ("channels", tab.status.channels_label),
                            ("tor", tab.status.tor_label), ("orderbook", tab.orderbook.ob_status)):
            text = label.text()
            if text and last.get(name) != text:
                last[name] = text
                lines.append(f"[{name}] {text}")
    from PyQt6.QtCore import QTimer
    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(record)
    timer.start()
    try:
        qtbot.waitUntil(lambda: "Tor Browser at 127.0.0.1:9150" in tab.status.tor_label.text(),
                        timeout=20_000)
        assert "7 onion directory nodes over Tor" in tab.status.channels_label.text()
        conns = {}

        def snapshot():
            link = jm_qt.runner.link
            if link is not None and link.state.pid and "unreachable" in tab.status.channels_label.text():
                conns["daemon"] = tcp_connections(link.state.pid)
                conns["amp"] = link.port
        timer.timeout.connect(snapshot)
        m = modals()                        # the error box at the end
        tab.orderbook.ob_refresh_button.click()
        qtbot.waitUntil(lambda: tab.orderbook.ob_status.text().startswith("No orderbook"), timeout=150_000)
    finally:
        timer.stop()
        record()
    print("\nstatus lines, in order:\n" + "\n".join(f"  {i + 1}. {t}" for i, t in
                                                     enumerate(lines)))
    (tmp_path / "status_lines.txt").write_text("\n".join(lines))
    text = "\n".join(lines)
    assert "Started the JoinMarket daemon" in text
    assert "onion via Tor 127.0.0.1:9150: 7 directories" in text
    assert "7 unreachable (Tor: onion service descriptor not found" in text
    assert "did not come up" in tab.orderbook.ob_status.text() or "did not come up" in text
    assert m.messages and "did not come up within 30s" in m.messages[0]   # channels_timeout
    m.stop()
    # the daemon talked to nothing but Tor Browser's SOCKS port (and its AMP client)
    assert conns, "never saw the daemon connected"
    stray = {c for c in conns["daemon"] if c[0] != conns["amp"] and c[2] != browser.socks_port}
    assert not stray, stray
    browser.stop()
