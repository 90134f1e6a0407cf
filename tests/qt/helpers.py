"""Helpers of the Qt tests (ordinary functions; the fixtures are in conftest.py)."""
from __future__ import annotations

from typing import Any


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
