"""Helpers of the Qt tests (ordinary functions; the fixtures are in conftest.py)."""
from __future__ import annotations

from typing import Any

from devstack.daemons import start_daemon
from devstack.ircd import irc_config


def start_taker_daemon(tmp_path: Any, ircd: Any, configure: Any, name: str,
                       counterparties: int) -> Any:
    """A jmdaemon of the test for the tab's taker, and the plugin's settings pointed at it: the
    IRC test server, fee limits, ``counterparties`` makers (at least 2), short waits."""
    daemon = start_daemon(tmp_path, name)
    configure(daemon_host="127.0.0.1", daemon_port=daemon.port, daemon_autostart=False,
              channels=irc_config(ircd), max_cj_fee_abs=50_000, max_cj_fee_rel="0.01",
              counterparties=counterparties, minimum_makers=2, orderbook_wait=4, maker_timeout=20)
    return daemon


def jm_tab(window: Any) -> Any:
    """The JoinMarket tab widget of ``window`` (None if absent)."""
    for i in range(window.tabs.count()):
        if window.tabs.tabText(i).replace("&", "") == "JoinMarket":
            return window.tabs.widget(i)
    return None


def close_window(gui: Any, window: Any) -> None:
    window.should_stop_wallet_on_close = False
    try:
        window.close()
    except RuntimeError:
        pass
    if window in gui.windows:
        gui.windows.remove(window)
