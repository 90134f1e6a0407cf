"""electrum_joinmarket: the JoinMarket plugin for Electrum >= 4.8 (plugin name ``joinmarket``).

This file is also Electrum's *plugin init module*: Electrum executes it (as
``electrum.plugins.joinmarket`` after :func:`electrum_joinmarket.loader.register_runtime`, or
as ``electrum_external_plugins.joinmarket`` from a zip) before it parses the command line,
even for ``electrum help``.  An exception here can stop Electrum from starting, so:

* it imports nothing at module level, and every import below is guarded;
* plugin commands are registered only when this file runs *as the plugin module* (a plain
  ``import electrum_joinmarket.x`` by a library user has no side effect on Electrum's command
  table), and at most once per process (Electrum refuses duplicate command names).

The command bodies are one-liners delegating to the plugin object
(:class:`electrum_joinmarket.plugin.JoinMarketPlugin`), which Electrum passes as ``plugin=``.
All real code is imported under the absolute name ``electrum_joinmarket.*`` so it exists once in
the process whatever name Electrum loaded this file under.
"""

PLUGIN_NAME = "joinmarket"


def _register_commands() -> None:
    from electrum.commands import known_commands, plugin_command

    if f"{PLUGIN_NAME}_status" in known_commands:
        return

    @plugin_command("", PLUGIN_NAME)
    async def status(self, plugin=None) -> dict:
        """Show the JoinMarket plugin status: versions, settings, daemon address and the
        JoinMarket session of every loaded wallet. Makes no network request."""
        return plugin.status()


if __name__ != "electrum_joinmarket":
    try:
        _register_commands()
    except Exception as _exc:  # never stop Electrum from starting
        try:
            from electrum.logging import get_logger
            get_logger(__name__).exception(f"joinmarket: could not register commands: {_exc!r}")
        except Exception:
            pass
