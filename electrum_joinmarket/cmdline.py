"""Electrum's ``cmdline`` GUI for the JoinMarket plugin (``electrum daemon`` / headless).

Electrum imports this file as ``<plugin module>.cmdline`` and instantiates ``Plugin``.  All logic
is in :mod:`electrum_joinmarket.plugin` (imported absolutely, so it exists once per process).
"""
from electrum_joinmarket.plugin import JoinMarketPlugin


class Plugin(JoinMarketPlugin):
    """Headless JoinMarket plugin: sessions open on ``daemon_wallet_loaded``/``load_wallet``."""
