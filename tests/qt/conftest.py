"""pytest-qt harness on Electrum's real Qt GUI (PyQt6, offscreen), built on the stack's one
Electrum daemon (Electrum's Network is a per-process singleton, so no second Daemon).

Order (docs/devstack.md, "Electrum in the tests"): the stack's loop/regtest/daemon exist already
(``electrum_node``); then ``register_runtime()``, ``Plugins(config, 'qt')``,
``ElectrumGui(config=, daemon=, plugins=)``, and ``gui._create_window_for_wallet(wallet)``.

``qapp`` is overridden *here only* (tests under tests/qt) to return Electrum's QApplication:
one QApplication per process.  The plugin is enabled per test and disabled afterwards (closing
its hooks), so other test packages never see the Qt plugin.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Optional

import pytest

from .helpers import close_window


@pytest.fixture(scope="session")
def electrum_gui(electrum_node):
    from electrum.gui.qt import ElectrumGui
    from electrum.plugin import Plugins

    from electrum_joinmarket.loader import register_runtime
    register_runtime()
    config = electrum_node.config
    config.set_key("dont_show_testnet_warning", True)
    config.set_key("plugins.joinmarket.enabled", False)
    plugins = Plugins(config, "qt")
    gui = ElectrumGui(config=config, daemon=electrum_node.daemon, plugins=plugins)
    yield gui
    for w in list(gui.windows):
        close_window(gui, w)
    for p in list(plugins.plugins.values()):
        p.close()
    plugins.stop()


@pytest.fixture(scope="session")
def qapp(electrum_gui):
    return electrum_gui.app


@pytest.fixture
def jm_qt(electrum_gui, electrum_node, qapp):
    """The Qt plugin enabled in the GUI's Plugins; disabled (hooks closed) after the test."""
    plugins = electrum_gui.plugins
    plugin = plugins.enable("joinmarket")
    yield plugin
    for w in list(electrum_gui.windows):
        close_window(electrum_gui, w)
    if plugins.get("joinmarket") is not None:
        plugins.disable("joinmarket")
    electrum_node.config.set_key("plugins.joinmarket.enabled", False)


@pytest.fixture
def open_window(electrum_gui, jm_qt, qtbot):
    """``open_window(wallet)`` -> Electrum's main window for a wallet of the stack daemon."""
    def make(wallet):
        w = electrum_gui._create_window_for_wallet(wallet)
        w.should_stop_wallet_on_close = False         # the fixtures close the wallets
        w.resize(1280, 860)
        qtbot.waitExposed(w)
        return w
    return make


@pytest.fixture
def configure(electrum_node):
    """Set plugin config keys for one test and remove them afterwards."""
    keys: list[str] = []

    def set_(**kv: Any) -> None:
        for k, v in kv.items():
            key = f"plugins.joinmarket.{k}"
            if isinstance(v, (list, dict)):
                v = json.dumps(v)
            electrum_node.config.set_key(key, v)
            keys.append(key)
    yield set_
    for k in keys:
        electrum_node.config.set_key(k, None)


class ModalCatcher:
    """Answers Electrum's modal dialogs while a test drives the GUI (their ``exec()`` blocks
    the click that opened them). ``handlers`` maps a dialog class name to a callable
    ``(dialog) -> None`` that must close it; message boxes are recorded and closed."""

    def __init__(self, handlers: Optional[dict[str, Callable[[Any], None]]] = None):
        from PyQt6.QtCore import QTimer
        self.handlers = dict(handlers or {})
        self.messages: list[str] = []
        self.seen: list[str] = []
        # the dialogs answered, held (not their id(): a closed dialog's id is reused by the
        # next one, which was then never answered and its exec() hung the test forever)
        self._handled: list = []
        self.timer = QTimer()
        self.timer.setInterval(100)
        self.timer.timeout.connect(self._poll)
        self.timer.start()

    def _poll(self) -> None:
        from PyQt6.QtWidgets import QApplication, QDialog, QMessageBox
        for w in QApplication.topLevelWidgets():
            if (not isinstance(w, QDialog) or not w.isVisible()
                    or any(w is h for h in self._handled)):
                continue
            name = type(w).__name__
            if isinstance(w, QMessageBox) and "QMessageBox" in self.handlers:
                self._handled.append(w)        # the test answers it (e.g. a question)
                self.seen.append(name)
                self.messages.append(w.text())
                self.handlers["QMessageBox"](w)
            elif isinstance(w, QMessageBox):
                self._handled.append(w)
                self.seen.append(name)
                self.messages.append(w.text())
                w.done(0)
            elif name in self.handlers:
                self._handled.append(w)
                self.seen.append(name)
                self.handlers[name](w)

    def stop(self) -> None:
        self.timer.stop()
        self._handled.clear()


@pytest.fixture
def modals():
    made: list[ModalCatcher] = []

    def make(**handlers: Callable[[Any], None]) -> ModalCatcher:
        m = ModalCatcher(handlers)
        made.append(m)
        return m
    yield make
    for m in made:
        m.stop()
