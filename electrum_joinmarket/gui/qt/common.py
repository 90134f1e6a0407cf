"""Plumbing shared by the JoinMarket tab's panels: the Qt-thread bridge (one queued
``pyqtSignal``), slots that never let an exception escape, user-facing error text, the panel
base class and the table helpers."""
from __future__ import annotations

import asyncio
import functools
import inspect
from typing import TYPE_CHECKING, Any, Callable, Optional

from electrum.i18n import _
from PyQt6.QtCore import QObject, Qt, pyqtSignal
from PyQt6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from electrum_joinmarket.logs import get_logger

if TYPE_CHECKING:  # pragma: no cover
    import concurrent.futures

    from electrum_joinmarket.gui.qt.tab import JoinMarketTab

log = get_logger(__name__)

__all__ = ["Bridge", "Panel", "NumItem", "make_table", "friendly_error", "guarded"]


def friendly_error(exc: BaseException) -> str:
    """One sentence for the user, chosen by the exception's type (never by its text); the
    traceback of a bug goes to Electrum's log only."""
    from electrum.util import UserFacingException

    from electrum_joinmarket.errors import Failure, JoinMarketError, failure_of
    from electrum_joinmarket.link.client import DaemonError
    from electrum_joinmarket.market.limits import FeeLimitsUnset
    if failure_of(exc) == Failure.CANCELLED:
        return _("Cancelled.")
    if isinstance(exc, FeeLimitsUnset):
        return _("Set both coinjoin fee limits first (in the form or JoinMarket settings).")
    if isinstance(exc, DaemonError):
        return _("The JoinMarket daemon: {}").format(exc)
    if isinstance(exc, (UserFacingException, JoinMarketError)):
        return str(exc)                  # our messages say what to do
    if isinstance(exc, (ConnectionError, OSError, asyncio.TimeoutError, TimeoutError)):
        return _("Could not reach the JoinMarket daemon ({}). Check the daemon address in "
                 "JoinMarket settings or press 'Start daemon'.").format(exc or type(exc).__name__)
    if isinstance(exc, ValueError):
        return str(exc)
    log.error("JoinMarket tab: unexpected error", exc_info=exc)
    return _("Unexpected error: {}. Details are in Electrum's log.").format(exc or type(exc).__name__)


def guarded(fn: Callable) -> Callable:
    """A Qt slot that never lets an exception escape (PyQt6 would abort Electrum): the user gets
    an Electrum error box, the traceback goes to the log. For methods of objects with
    ``_closed`` and ``show_error`` (the tab and its panels)."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    arity = None if any(p.kind == p.VAR_POSITIONAL for p in params) else len(params)

    @functools.wraps(fn)
    def slot(self: Any, *args: Any) -> Any:
        try:
            # Qt passes extra signal arguments (e.g. clicked's `checked`): keep what fn takes
            return fn(self, *(args if arity is None else args[:arity]))
        except Exception as exc:
            log.error("JoinMarket tab: %s failed", fn.__name__, exc_info=exc)
            if not self._closed:
                try:
                    self.show_error(friendly_error(exc))
                except Exception:
                    pass
    return slot


class Bridge(QObject):
    """Runs callables on the Qt thread, whatever thread emits (a queued signal)."""
    call = pyqtSignal(object)

    def __init__(self) -> None:
        super().__init__()
        self.call.connect(self._run, Qt.ConnectionType.QueuedConnection)  # type: ignore[call-arg]

    @staticmethod
    def _run(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("JoinMarket tab: callback failed")


class Panel(QWidget):
    """One part of the JoinMarket tab: its widgets and slots, over the tab's plumbing (the plugin,
    the wallet window, :meth:`JoinMarketTab.run_async`, the bridge, error boxes)."""

    def __init__(self, tab: "JoinMarketTab"):
        super().__init__()
        self.tab = tab

    @property
    def plugin(self) -> Any:
        return self.tab.plugin

    @property
    def wallet(self) -> Any:
        return self.tab.wallet

    @property
    def main_window(self) -> Any:
        return self.tab.main_window

    @property
    def _closed(self) -> bool:
        return self.tab._closed

    def show_error(self, msg: str) -> None:
        self.tab.show_error(msg)

    def show_exc(self, exc: BaseException) -> None:
        self.tab.show_error(friendly_error(exc))

    def run_async(self, coro: Any, on_ok: Callable[[Any], None],
                  on_err: Optional[Callable[[BaseException], None]] = None
                  ) -> "concurrent.futures.Future":
        return self.tab.run_async(coro, on_ok, on_err)


class NumItem(QTableWidgetItem):
    """A table cell that sorts by a number, not by its text."""

    def __init__(self, text: str, key: Any):
        super().__init__(text)
        self.key = key
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, NumItem):
            a = self.key if self.key is not None else -1
            b = other.key if other.key is not None else -1
            return bool(a < b)
        return super().__lt__(other)


def make_table(columns: list[str]) -> QTableWidget:
    t = QTableWidget(0, len(columns))
    t.setHorizontalHeaderLabels(columns)
    t.verticalHeader().setVisible(False)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setAlternatingRowColors(True)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.horizontalHeader().setStretchLastSection(True)
    return t
