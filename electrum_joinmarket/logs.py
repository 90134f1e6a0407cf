"""The plugin's loggers are Electrum's (``electrum.logging.get_logger``).

A plain ``logging.getLogger(__name__)`` hangs off the root logger, whose level inside Electrum is
WARNING: every INFO line of the taker, the maker and the daemon link was lost, even with
``electrum -v``. Electrum's loggers are children of ``electrum`` (level DEBUG), go to Electrum's
log file and, with ``-v``, to stderr.

Every module is named ``electrum.joinmarket.<module path>`` whatever name Electrum imported the
plugin under (``electrum_joinmarket``, ``electrum.plugins.joinmarket``, or a zip's
``electrum_external_plugins.joinmarket``), so ``electrum -v=warning,joinmarket=debug`` selects
exactly the plugin's lines.
"""
from __future__ import annotations

import logging

__all__ = ["LOGGER_PREFIX", "logger_name", "get_logger"]

LOGGER_PREFIX = "joinmarket"
_PACKAGE_NAMES = ("electrum_external_plugins.joinmarket", "electrum.plugins.joinmarket",
                  "electrum_joinmarket")


def logger_name(module: str) -> str:
    """``electrum_joinmarket.maker.maker`` → ``joinmarket.maker.maker`` (Electrum adds
    ``electrum.``)."""
    for package in _PACKAGE_NAMES:
        if module == package or module.startswith(package + "."):
            return LOGGER_PREFIX + module[len(package):]
    return f"{LOGGER_PREFIX}.{module}"


def get_logger(module: str) -> logging.Logger:
    """Electrum's logger for the plugin module ``module`` (pass ``__name__``)."""
    from electrum.logging import get_logger as electrum_logger
    logger: logging.Logger = electrum_logger(logger_name(module))
    return logger
