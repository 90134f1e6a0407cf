"""Electrum's Qt GUI for the JoinMarket plugin: a "JoinMarket" tab in every wallet window.

Electrum imports this file as ``<plugin module>.qt`` and instantiates ``Plugin``.  The core's
hooks keep running (each override below calls it), and Qt itself is imported only when a window
exists (:mod:`electrum_joinmarket.gui.qt.tab`, :mod:`electrum_joinmarket.gui.qt.dialogs`), so loading the
plugin can never break Electrum's start.

* ``load_wallet(wallet, window)`` adds the tab (Electrum fires it again for every window after a
  plugin is enabled: ``gui_object.reload_windows()``);
* ``on_close_window(window)`` removes it; disabling the plugin (``on_close``) removes every tab;
* ``settings_dialog(parent)`` is what Electrum's plugin dialog opens.
"""
from __future__ import annotations

from typing import Any

from electrum.plugin import hook

from electrum_joinmarket.plugin import JoinMarketPlugin

TAB_TITLE = "JoinMarket"


class Plugin(JoinMarketPlugin):
    """Qt JoinMarket plugin."""

    def __init__(self, parent: Any, config: Any, name: str):
        super().__init__(parent, config, name)
        self._tabs: dict[int, tuple[Any, Any]] = {}     # id(window) -> (window, tab)

    # -- hooks -----------------------------------------------------------------------------------
    @hook
    def load_wallet(self, wallet: Any, window: Any) -> None:
        super().load_wallet(wallet, window)              # the core's session for this wallet
        if window is None or not hasattr(window, "tabs"):
            return
        self._remove_tab(window)
        from electrum.i18n import _

        from electrum_joinmarket.gui.qt.tab import JoinMarketTab
        tab = JoinMarketTab(self, window)
        try:
            window.tabs.addTab(tab, self.icon(), _(TAB_TITLE))
        except Exception:
            window.tabs.addTab(tab, _(TAB_TITLE))
        self._tabs[id(window)] = (window, tab)

    def icon(self) -> Any:
        """The plugin's icon (manifest ``icon``), read as Electrum reads it: from the zip, or
        from this folder when registered at run time; Electrum's coins icon if unreadable."""
        from electrum.gui.qt.util import read_QIcon, read_QIcon_from_bytes
        try:
            return read_QIcon_from_bytes(self.parent.read_file(self.name, "joinmarket.png"))
        except Exception:
            return read_QIcon("tab_coins.png")

    @hook
    def on_close_window(self, window: Any) -> None:
        self._remove_tab(window)

    @hook
    def close_wallet(self, wallet: Any) -> None:
        super().close_wallet(wallet)

    def on_close(self) -> None:
        """The plugin is disabled (or Electrum quits): remove every tab, then the core's cleanup."""
        for window, _tab in list(self._tabs.values()):
            self._remove_tab(window)
        super().on_close()

    def _remove_tab(self, window: Any) -> None:
        entry = self._tabs.pop(id(window), None)
        if entry is None:
            return
        _w, tab = entry
        try:
            tab.clean_up()
            i = window.tabs.indexOf(tab)
            if i >= 0:
                window.tabs.removeTab(i)
            tab.deleteLater()
        except RuntimeError:          # the window's C++ object is already gone
            pass

    def tab_for(self, window: Any) -> Any:
        entry = self._tabs.get(id(window))
        return entry[1] if entry else None

    # -- settings --------------------------------------------------------------------------------
    def requires_settings(self) -> bool:
        return True

    def settings_dialog(self, parent: Any) -> bool:
        from electrum_joinmarket.gui.qt.dialogs import SettingsDialog
        return SettingsDialog(parent, self).run()

    def settings_widget(self, window: Any) -> Any:     # Electrum <= 4.5 asks for a button
        from functools import partial

        from electrum.gui.qt.util import EnterButton
        from electrum.i18n import _
        return EnterButton(_("Settings"), partial(self.settings_dialog, window))
