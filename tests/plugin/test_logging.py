"""Plugin modules log through Electrum's logger (issue 10.5): a plain logging.getLogger(__name__)
hangs off the root logger, whose level inside Electrum is WARNING, so every INFO line of the
taker, the maker and the daemon link was lost, even with `electrum -v`."""
from __future__ import annotations

import ast
import importlib
import logging
import os

import pytest

from electrum_joinmarket.logs import get_logger, logger_name

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "electrum_joinmarket")


def _modules():
    for root, _dirs, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(root, name)


def test_no_plugin_module_uses_a_stdlib_logger():
    offenders = []
    for path in _modules():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "getLogger"):
                offenders.append(os.path.relpath(path, PACKAGE))
    assert offenders == [], offenders


@pytest.mark.parametrize("module", ["electrum_joinmarket.maker.maker",
                                    "electrum_joinmarket.taker.taker",
                                    "electrum_joinmarket.link.daemon",
                                    "electrum_joinmarket.runner"])
def test_info_lines_reach_electrums_log(module):
    """Electrum's stderr/file handlers sit on the root logger at WARNING; its own loggers are
    children of `electrum` at DEBUG. An INFO line of ours must be enabled under that setup."""
    from electrum.logging import electrum_logger, root_logger
    assert root_logger.level == logging.WARNING           # what Electrum configures
    log = importlib.import_module(module).log
    assert log.name == "electrum." + logger_name(module)
    assert log.parent is electrum_logger or log.name.startswith(electrum_logger.name + ".")
    assert log.isEnabledFor(logging.INFO)
    assert not logging.getLogger(module).isEnabledFor(logging.INFO)   # the old logger: lost


def test_logger_names_do_not_depend_on_how_electrum_imported_the_plugin():
    for name in ("electrum_joinmarket.maker.maker", "electrum.plugins.joinmarket.maker.maker",
                 "electrum_external_plugins.joinmarket.maker.maker"):
        assert logger_name(name) == "joinmarket.maker.maker"
        assert get_logger(name).name == "electrum.joinmarket.maker.maker"
