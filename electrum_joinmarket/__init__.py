"""electrum_joinmarket: the JoinMarket plugin for Electrum >= 4.8 (plugin name ``joinmarket``).

This file is also Electrum's *plugin init module*: Electrum executes it (as
``electrum.plugins.joinmarket`` after :func:`electrum_joinmarket.loader.register_runtime`, or
as ``electrum_external_plugins.joinmarket`` from a zip) before it parses the command line,
even for ``electrum help``.  An exception here can stop Electrum from starting, so:

* it imports nothing at module level, and the one import below is guarded;
* the plugin's commands (:mod:`electrum_joinmarket.commands`, module-level ``@plugin_command``s)
  and settings (:mod:`electrum_joinmarket.settings`, ``ConfigVar``s) are registered only when
  this file runs *as the plugin module* (a plain ``import electrum_joinmarket.x`` by a library
  user has no side effect on Electrum's command table), and once per process (they are imported
  under the absolute name ``electrum_joinmarket.*``, so they exist once whatever name Electrum
  loaded this file under, and however often it executes it).

Layout: ``plugin.py`` (Electrum's ``BasePlugin``: sessions, hooks), ``qt.py`` / ``cmdline.py``
(the GUI subclasses Electrum instantiates), ``commands.py``, ``settings.py``, ``runner.py`` (runs
takers and makers), and the packages ``protocol``, ``market``, ``chain``, ``tx``, ``taker``,
``maker``, ``link``, ``gui``.
"""

PLUGIN_NAME = "joinmarket"


def _register() -> None:
    from electrum_joinmarket import commands as _commands  # noqa: F401  (registers them)
    from electrum_joinmarket import settings as _settings  # noqa: F401  (declares them)


def _install_cli_client() -> None:
    """In an ``electrum joinmarket_…`` client process only: follow/Ctrl-C/timeout handling
    (:mod:`electrum_joinmarket.cli_client`)."""
    import sys

    from electrum_joinmarket import cli_client
    if cli_client.is_client_of_ours(sys.argv):
        cli_client.install()


def _install_setconfig() -> None:
    """``setconfig plugins.joinmarket.* VALUE`` as users type numbers
    (:mod:`electrum_joinmarket.setconfig`); in every process (client and daemon)."""
    from electrum_joinmarket import setconfig
    setconfig.install()


if __name__ != "electrum_joinmarket":
    for _step in (_register, _install_setconfig, _install_cli_client):
        try:
            _step()
        except Exception as _exc:  # never stop Electrum from starting
            try:
                from electrum.logging import get_logger
                get_logger(__name__).exception(f"joinmarket: {_step.__name__} failed: {_exc!r}")
            except Exception:
                pass
