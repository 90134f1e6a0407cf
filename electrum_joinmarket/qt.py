"""Electrum's Qt GUI for the JoinMarket plugin: a "JoinMarket" tab in every wallet window.

Electrum imports this file as ``<plugin module>.qt`` and instantiates ``Plugin``.  The core's
hooks keep running (each override below calls it), and Qt itself is imported only when a window
exists (:mod:`electrum_joinmarket.gui.qt.tab`, :mod:`electrum_joinmarket.gui.qt.dialogs`), so loading the
plugin can never break Electrum's start.

* ``load_wallet(wallet, window)`` adds the tab (Electrum fires it again for every window after a
  plugin is enabled: ``gui_object.reload_windows()``), with its Depths and Multiple join views,
  and shows each coin's JoinMarket depth in Electrum's Coins tab (label and tooltip);
* ``on_close_window(window)`` removes it; disabling the plugin (``on_close``) removes every tab;
* ``qt_utxo_menu`` adds the depth and "move to depth" to the Coins tab's context menu;
* ``tc_sign_wrapper`` — called by Electrum's main window before it signs a transaction the user
  made in the Send tab — asks the user when that transaction spends coins of several
  JoinMarket depths, and drops the signed transaction if the user says no;
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
        self._add_depth_views(tab, wallet, window)
        try:
            window.tabs.addTab(tab, self.icon(), _(TAB_TITLE))
        except Exception:
            window.tabs.addTab(tab, _(TAB_TITLE))
        self._tabs[id(window)] = (window, tab)
        self._decorate_coins_tab(window, wallet)

    def _add_depth_views(self, tab: Any, wallet: Any, window: Any) -> None:
        from electrum.i18n import _

        from electrum_joinmarket.gui.qt.depths_panel import DepthsPanel
        from electrum_joinmarket.gui.qt.schedule_panel import SchedulePanel
        session = self.session_for(wallet)
        assert session is not None
        tab.depths_panel = DepthsPanel(session.depths, window)
        tab.schedule_panel = SchedulePanel(self.runner.schedules_of(session), session.depths,
                                           window)
        tab.inner_tabs.addTab(tab.depths_panel, _("Depths"))
        tab.inner_tabs.addTab(tab.schedule_panel, _("Multiple join"))

    # -- Electrum's Coins tab ----------------------------------------------------------------
    def _decorate_coins_tab(self, window: Any, wallet: Any) -> None:
        """Show each coin's depth in the Coins tab: a "[depth N]" prefix on its label and a
        tooltip line. Wraps the list's ``refresh_row`` of this window only (undone when the tab
        is removed); Electrum has no hook for it."""
        ul = getattr(window, "utxo_list", None)
        if ul is None or getattr(ul, "_jm_refresh_row", None) is not None:
            return
        session = self.session_for(wallet)
        assert session is not None
        original = ul.refresh_row

        def refresh_row(key: str, row: int) -> None:
            original(key, row)
            try:
                decorate_utxo_row(ul, session.depths, key, row)
            except Exception:
                self.logger.exception("could not show the depth of a coin")
        ul._jm_refresh_row = original
        ul.refresh_row = refresh_row
        ul.update()

    def _undecorate_coins_tab(self, window: Any) -> None:
        ul = getattr(window, "utxo_list", None)
        if ul is None or getattr(ul, "_jm_refresh_row", None) is None:
            return
        try:
            del ul.refresh_row            # back to the class's method
            ul._jm_refresh_row = None
            ul.update()
        except (AttributeError, RuntimeError):
            pass

    @hook
    def qt_utxo_menu(self, menu: Any, coins: Any, wallet: Any) -> None:
        session = self.session_for(wallet, create=False)
        if session is None or not coins:
            return
        from electrum.i18n import _
        rec = session.depths
        outpoints = [c.prevout.to_str() for c in coins]
        depths = sorted({cd.depth for op in outpoints if (cd := rec.depth_of(op)) is not None})
        sub = menu.addMenu(_("JoinMarket depth: {}").format(", ".join(map(str, depths)) or "?"))
        for d in range(rec.count):
            action = sub.addAction(_("Move to depth {}").format(d))
            action.triggered.connect(lambda _checked=False, d=d: self._move_coins(wallet, outpoints, d))

    def _move_coins(self, wallet: Any, outpoints: list[str], depth: int) -> None:
        session = self.session_for(wallet)
        assert session is not None
        for op in outpoints:
            session.depths.set_coin_depth(op, depth)
        for window, _tab in list(self._tabs.values()):
            if window.wallet is wallet:
                window.utxo_list.update()
                if getattr(_tab, "depths_panel", None) is not None:
                    _tab.depths_panel.refresh()

    # -- before Electrum signs a transaction from its Send tab --------------------------------
    @hook
    def tc_sign_wrapper(self, wallet: Any, tx: Any, on_success: Any, on_failure: Any) -> Any:
        """Return None to let Electrum sign and continue; a replacement ``on_success`` that
        drops the signed transaction (neither broadcast nor shown) if the user declines."""
        if getattr(wallet, "wallet_type", None) == "2fa":   # TrustedCoin's hook owns these
            return None
        session = self.session_for(wallet, create=False)
        if session is None:
            return None
        from electrum_joinmarket.depths.record import MixedDepthsError
        try:
            session.depths.check_tx_inputs(tx)
            return None
        except MixedDepthsError as exc:
            depths = exc.depths
        window = next((w for w, _t in self._tabs.values() if w.wallet is wallet), None)
        if window is None:
            return None
        from electrum.i18n import _
        if window.question(merge_warning(depths), title=_("JoinMarket: this payment merges "
                                                          "depths")):
            return None

        def declined(_result: Any) -> None:
            from electrum.util import UserCancelled
            on_failure((UserCancelled, UserCancelled(), None))
            window.show_message(_("Not sent. Select coins of one depth in the Coins tab "
                                  "(their depth is in the label), then Spend."))
        return declined

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
        self._undecorate_coins_tab(window)
        for panel in (getattr(tab, "depths_panel", None), getattr(tab, "schedule_panel", None)):
            if panel is not None:
                panel.clean_up()
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


def merge_warning(depths: Any) -> str:
    from electrum.i18n import _
    return _("This transaction spends coins from JoinMarket depths {}. Spending them together "
             "links their histories and undoes what your coinjoins separated. Sign it "
             "anyway?").format(", ".join(str(d) for d in depths))


def decorate_utxo_row(ul: Any, depths: Any, key: str, row: int) -> None:
    """Add the coin's depth to its row of Electrum's Coins tab (label prefix, tooltip line)."""
    cd = depths.depth_of(key)
    if cd is None:
        return
    from electrum.i18n import _

    from electrum_joinmarket.gui.qt.depths_panel import KIND_TEXT
    cols = ul.Columns
    line = _("JoinMarket depth {} — {} coinjoin(s), {}").format(
        cd.depth, cd.coinjoins, KIND_TEXT.get(cd.kind, cd.kind))
    for col in cols:
        item = ul.std_model.item(row, col)
        if item is None:
            continue
        tip = item.toolTip()
        item.setToolTip(f"{tip}\n{line}" if tip else line)
        if col == cols.LABEL:
            item.setText(f"[{_('depth')} {cd.depth}] {item.text()}".rstrip())

