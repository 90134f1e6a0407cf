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

    @plugin_command("wp", PLUGIN_NAME)
    async def coinjoin(self, destination, amount, plugin=None, wallet=None, password=None,
                       counterparties=None, max_cj_fee_abs=None, max_cj_fee_rel=None,
                       broadcast="self") -> dict:
        """Run one JoinMarket coinjoin from this wallet and wait for its outcome (minutes).

        arg:str:destination:Address that receives the coinjoin output
        arg:decimal:amount:Amount in BTC; 0 sweeps every confirmed unfrozen coin
        arg:int:counterparties:Number of makers (default: the setting, else 8)
        arg:str:max_cj_fee_abs:Refuse makers whose fee is above this many sats AND above the relative limit (default: the setting)
        arg:str:max_cj_fee_rel:Relative fee limit, a fraction of the amount, e.g. 0.004 or 0.4% (default: the setting)
        arg:str:broadcast:Who broadcasts: self, random-peer or not-self
        """
        from electrum.commands import satoshis
        overrides = {"broadcast": broadcast}
        if counterparties is not None:
            overrides["n_makers"] = int(counterparties)
        limits = plugin.fee_limits(max_cj_fee_abs, max_cj_fee_rel)
        runner = plugin.runner
        config = runner.taker_config(satoshis(amount), destination, limits=limits, **overrides)
        outcome = await runner.coinjoin(wallet, config, password)
        return outcome.to_dict()

    @plugin_command("n", PLUGIN_NAME)
    async def orderbook(self, plugin=None, wait=None) -> dict:
        """Collect the JoinMarket orderbook through the daemon and show it.

        arg:int:wait:Seconds to collect offers (default: the orderbook_wait setting)
        """
        return await plugin.runner.orderbook(None if wait is None else float(wait))

    @plugin_command("wp", PLUGIN_NAME)
    async def start_maker(self, plugin=None, wallet=None, password=None, ordertype="reloffer",
                          cjfee_r="0.00002", cjfee_a=500, txfee=0, minsize=100000) -> dict:
        """Start a yield generator (maker) on this wallet; it runs until stop_maker.

        arg:str:ordertype:reloffer (fee relative to the amount) or absoffer (fixed fee)
        arg:str:cjfee_r:Relative fee of a reloffer, e.g. 0.00002
        arg:int:cjfee_a:Fee in sats of an absoffer
        arg:int:txfee:Miner-fee contribution in sats taken from our change
        arg:int:minsize:Smallest coinjoin amount we accept, in sats
        """
        return await plugin.runner.start_maker(wallet, password, ordertype=ordertype,
                                               cjfee_r=str(cjfee_r), cjfee_a=int(cjfee_a),
                                               txfee=int(txfee), minsize=int(minsize))

    @plugin_command("w", PLUGIN_NAME)
    async def stop_maker(self, plugin=None, wallet=None) -> bool:
        """Stop this wallet's yield generator (reserved coins are released)."""
        return plugin.runner.stop_maker(wallet)

    @plugin_command("w", PLUGIN_NAME)
    async def history(self, plugin=None, wallet=None) -> list:
        """Past coinjoins of this wallet (taker side), oldest first."""
        return plugin.runner.history(wallet)


if __name__ != "electrum_joinmarket":
    try:
        _register_commands()
    except Exception as _exc:  # never stop Electrum from starting
        try:
            from electrum.logging import get_logger
            get_logger(__name__).exception(f"joinmarket: could not register commands: {_exc!r}")
        except Exception:
            pass
