"""Electrum's Qt GUI for the JoinMarket plugin — placeholder.

The JoinMarket tab (orderbook, coinjoin form, progress, history) comes later.  Until then this
adds no widget, no menu and no Qt import, so it cannot break Electrum's main window; the core's
``load_wallet``/``close_wallet`` hooks (fired by every Qt window) keep one session per wallet.
"""
from electrum_joinmarket.plugin import JoinMarketPlugin


class Plugin(JoinMarketPlugin):
    """Qt JoinMarket plugin (no UI yet)."""

    def requires_settings(self) -> bool:
        return False
