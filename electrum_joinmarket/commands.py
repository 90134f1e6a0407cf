"""The plugin's commands, ``electrum joinmarket_<name>``: module-level ``@plugin_command``
coroutines in Electrum 4.8's idiom (as ``electrum/plugins/nwc``). Electrum passes the loaded
plugin object as ``plugin=``; each body is a line or two over it and its runner.

* Importing this module registers the commands (Electrum refuses a name twice, so it is
  imported once per process, by the plugin's init module only when that runs as Electrum's
  plugin module: importing ``electrum_joinmarket`` as a library registers nothing).
* A user's mistake (no fee limits, a malformed argument, a busy wallet, no daemon) raises a
  :class:`~electrum_joinmarket.errors.UserError`, Electrum's ``UserFacingException``: the CLI
  prints its one line, without a traceback.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from electrum.commands import plugin_command

from electrum_joinmarket.errors import UserError
from electrum_joinmarket.settings import PLUGIN_NAME

if TYPE_CHECKING:  # pragma: no cover
    from electrum.commands import Commands
    from electrum.wallet import Abstract_Wallet

    from electrum_joinmarket.plugin import JoinMarketPlugin

__all__ = ["status", "coinjoin", "progress", "cancel", "orderbook", "start_maker", "stop_maker",
           "history", "depths", "set_depth", "depth_settings", "schedule_create", "schedule_start",
           "schedule_status", "schedule_stop", "schedule_address"]


def _int_arg(name: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a whole number, got {str(value)[:30]!r}") from None


def _seconds_arg(name: str, value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise UserError(f"{name} must be a number of seconds (0 to 3600), got {str(value)[:30]!r}")
    return seconds


@plugin_command("", PLUGIN_NAME)
async def status(self: "Commands", plugin: "JoinMarketPlugin" = None,  # type: ignore[assignment]
                 check: Any = None) -> dict:
    """Show the JoinMarket plugin status: versions, settings, daemon address, the JoinMarket
    session of every loaded wallet, and the message channels: the directory nodes in use,
    whether Tor is running (a local check) and each directory's state. Makes no network
    request unless --check is given.

    arg:int:check:Connect to the directory nodes now (through the daemon and Tor) for up to this many seconds and show each one's state
    """
    out = plugin.status()
    out["channels"] = await plugin.runner.channel_report(check=check)
    return out


@plugin_command("wp", PLUGIN_NAME)
async def coinjoin(self: "Commands", destination: str, amount: Any,
                   plugin: "JoinMarketPlugin" = None,  # type: ignore[assignment]
                   wallet: Optional["Abstract_Wallet"] = None, password: Optional[str] = None,
                   counterparties: Any = None, max_cj_fee_abs: Any = None,
                   max_cj_fee_rel: Any = None, broadcast: str = "self", wait: bool = False,
                   allow_script_mismatch: bool = False, depth: Any = None) -> dict:
    """Start a JoinMarket coinjoin from one depth of this wallet; answers at once with its job
    id.

    The coinjoin runs inside Electrum (minutes): follow it with joinmarket_progress, cancel it
    with joinmarket_cancel. With --wait this command follows it to the end (progress on stderr,
    Ctrl-C cancels it) and exits with status 1 if it fails or is cancelled.

    arg:str:destination:Address that receives the coinjoin output
    arg:decimal:amount:Amount in BTC; 0 sweeps every confirmed unfrozen coin of the depth
    arg:int:depth:JoinMarket depth to spend from (default: the lowest that can pay)
    arg:int:counterparties:Number of makers (default: the setting, else 8)
    arg:str:max_cj_fee_abs:Refuse makers whose fee is above this many sats AND above the relative limit (default: the setting)
    arg:str:max_cj_fee_rel:Relative fee limit, a fraction of the amount, e.g. 0.004 or 0.4% (default: the setting)
    arg:str:broadcast:Who broadcasts: self, random-peer or not-self
    arg:bool:wait:Follow the coinjoin to its end; exit status 1 if it fails or is cancelled
    arg:bool:allow_script_mismatch:Go ahead although the destination's address type differs from the other coinjoin outputs (yours would stand out)
    """
    from electrum.commands import satoshis

    from electrum_joinmarket.jobs import cmd_coinjoin
    return await cmd_coinjoin(
        plugin, wallet, password, satoshis(amount), destination,
        counterparties=None if counterparties is None else _int_arg("counterparties", counterparties),
        max_cj_fee_abs=max_cj_fee_abs, max_cj_fee_rel=max_cj_fee_rel, broadcast=broadcast,
        wait=bool(wait), allow_script_mismatch=bool(allow_script_mismatch),
        depth=None if depth is None else _int_arg("depth", depth))


@plugin_command("w", PLUGIN_NAME)
async def progress(self: "Commands", plugin: "JoinMarketPlugin" = None,  # type: ignore[assignment]
                   wallet: Optional["Abstract_Wallet"] = None, wait: bool = False,
                   since: Any = None, job: Optional[str] = None) -> dict:
    """The wallet's current (or last) coinjoin: stage, makers, seconds left, its log and
    outcome.

    arg:bool:wait:Wait (within the RPC timeout) until it ends; exit status 1 if it failed
    arg:int:since:With --wait, answer as soon as there is a log line after the first SINCE
    arg:str:job:A job id (default: the wallet's newest)
    """
    from electrum_joinmarket.jobs import cmd_progress
    return await cmd_progress(plugin.runner, wallet, bool(wait),
                              None if since is None else _int_arg("since", since), job)


@plugin_command("w", PLUGIN_NAME)
async def cancel(self: "Commands", plugin: "JoinMarketPlugin" = None,  # type: ignore[assignment]
                 wallet: Optional["Abstract_Wallet"] = None) -> dict:
    """Cancel the wallet's running coinjoin: nothing of yours is signed or broadcast, coins are
    unfrozen (refused once its signed transaction is being broadcast)."""
    from electrum_joinmarket.jobs import cmd_cancel
    return await cmd_cancel(plugin.runner, wallet)


@plugin_command("n", PLUGIN_NAME)
async def orderbook(self: "Commands", plugin: "JoinMarketPlugin" = None,  # type: ignore[assignment]
                    wait: Any = None) -> dict:
    """Collect the JoinMarket orderbook through the daemon and show it.

    arg:int:wait:Seconds to collect offers (default: the orderbook_wait setting, within the RPC timeout)
    """
    from electrum_joinmarket.jobs import electrum_command, wait_budget
    budget = max(1.0, wait_budget(plugin.config) - 10.0)   # connecting takes a few seconds too
    if wait is None:
        seconds = min(float(plugin.config.JM_ORDERBOOK_WAIT), budget)
    else:
        seconds = _seconds_arg("wait", wait)
        if seconds > budget:
            raise UserError(f"--wait {seconds:g} does not fit in Electrum's RPC timeout "
                            f"({plugin.config.CLI_TIMEOUT:g} s): use at most {budget:g}, or raise "
                            f"the timeout with '{electrum_command(plugin.config, 'setconfig', 'timeout', str(int(seconds) + 30))}'")
    return await plugin.runner.orderbook(seconds)


@plugin_command("wp", PLUGIN_NAME)
async def start_maker(self: "Commands", plugin: "JoinMarketPlugin" = None,  # type: ignore[assignment]
                      wallet: Optional["Abstract_Wallet"] = None, password: Optional[str] = None,
                      ordertype: Optional[str] = None, cjfee_r: Any = None, cjfee_a: Any = None,
                      txfee: Any = None, minsize: Any = None, autostart: Any = None) -> dict:
    """Start a yield generator (maker) on this wallet; it runs until stop_maker.

    Options not given are the ones this wallet used last time (kept in the wallet file), else
    the defaults shown. Earnings are kept in the wallet file (joinmarket_history).

    arg:str:ordertype:reloffer (fee relative to the amount) or absoffer (fixed fee); default reloffer
    arg:str:cjfee_r:Relative fee of a reloffer, e.g. 0.00002 (default)
    arg:int:cjfee_a:Fee in sats of an absoffer (default 500)
    arg:int:txfee:Miner-fee contribution in sats taken from our change (default 0)
    arg:int:minsize:Smallest coinjoin amount we accept, in sats (default 100000)
    arg:bool:autostart:true: start this maker whenever Electrum loads the wallet; false: not
    """
    from electrum.commands import eval_bool
    given = {"ordertype": ordertype,
             "cjfee_r": None if cjfee_r is None else str(cjfee_r),
             "cjfee_a": None if cjfee_a is None else _int_arg("cjfee_a", cjfee_a),
             "txfee": None if txfee is None else _int_arg("txfee", txfee),
             "minsize": None if minsize is None else _int_arg("minsize", minsize)}
    auto = None if autostart is None else (autostart if isinstance(autostart, bool)
                                           else eval_bool(str(autostart)))
    return await plugin.runner.start_maker(wallet, password, autostart=auto, **given)


@plugin_command("w", PLUGIN_NAME)
async def stop_maker(self: "Commands", plugin: "JoinMarketPlugin" = None,  # type: ignore[assignment]
                     wallet: Optional["Abstract_Wallet"] = None, autostart: Any = None) -> dict:
    """Stop this wallet's yield generator (reserved coins are released); its settings and
    earnings stay in the wallet file.

    arg:bool:autostart:false: also stop it coming back when Electrum loads the wallet
    """
    from electrum.commands import eval_bool
    auto = None if autostart is None else (autostart if isinstance(autostart, bool)
                                           else eval_bool(str(autostart)))
    stopped = plugin.runner.stop_maker(wallet, autostart=auto)
    return dict(plugin.runner.maker_status(wallet), stopped=stopped)


@plugin_command("w", PLUGIN_NAME)
async def history(self: "Commands", plugin: "JoinMarketPlugin" = None,  # type: ignore[assignment]
                  wallet: Optional["Abstract_Wallet"] = None) -> list:
    """Past coinjoins of this wallet that reached makers — taker side (success, failure,
    cancellation) and maker side (earnings) — oldest first."""
    return list(plugin.runner.history(wallet))


# -- depths and schedules (issue 15; docs/depths-and-schedules.md) --------------------------------

@plugin_command("w", PLUGIN_NAME)
async def depths(self: "Commands", plugin: "JoinMarketPlugin" = None,  # type: ignore[assignment]
                 wallet: Optional["Abstract_Wallet"] = None) -> dict:
    """This wallet's coins by JoinMarket depth: balance, coins, how many coinjoins each went
    through, merges, and what a rebuild could not recover."""
    return plugin.session_for(wallet).depths.summary()


@plugin_command("w", PLUGIN_NAME)
async def set_depth(self: "Commands", outpoint: str, depth: Any,
                    plugin: "JoinMarketPlugin" = None,  # type: ignore[assignment]
                    wallet: Optional["Abstract_Wallet"] = None) -> dict:
    """Put one coin of this wallet in a JoinMarket depth (e.g. a deposit you want mixed from
    another depth).

    arg:str:outpoint:The coin, txid:n
    arg:int:depth:Depth number
    """
    rec = plugin.session_for(wallet).depths
    rec.set_coin_depth(outpoint, _int_arg("depth", depth))
    now = rec.depth_of(outpoint)
    return {"outpoint": outpoint, "depth": None if now is None else now.depth,
            "balances": rec.balances()}


@plugin_command("w", PLUGIN_NAME)
async def depth_settings(self: "Commands", plugin: "JoinMarketPlugin" = None,  # type: ignore[assignment]
                         wallet: Optional["Abstract_Wallet"] = None, count: Any = None,
                         deposit_depth: Any = None) -> dict:
    """Show or change this wallet's JoinMarket depth settings: how many depths (mixdepths) it
    has, and the depth coins arriving from outside are put in (coins already there stay).

    arg:int:count:Number of depths, 1 to 16 (default 5, as JoinMarket's mixdepths)
    arg:int:deposit_depth:Depth for coins arriving from outside from now on
    """
    rec = plugin.session_for(wallet).depths
    if count is not None:
        rec.set_count(_int_arg("count", count))
    if deposit_depth is not None:
        rec.set_deposit_depth(_int_arg("deposit_depth", deposit_depth))
    return {"count": rec.count, "deposit_depth": rec.deposit_depth, "balances": rec.balances()}


@plugin_command("w", PLUGIN_NAME)
async def schedule_create(self: "Commands", plugin: "JoinMarketPlugin" = None,  # type: ignore[assignment]
                          wallet: Optional["Abstract_Wallet"] = None, steps: Any = None,
                          tumbler: Any = None, destinations: Optional[str] = None,
                          name: str = "", max_attempts: Any = 3) -> dict:
    """Create a schedule (several coinjoins, one after another) in this wallet: from steps, or a
    tumble from the tumbler's parameters. Start it with schedule_start.

    arg:json:steps:List of steps {depth, amount, counterparties, destination, wait_blocks}
    arg:json:tumbler:Tumbler parameters, {} for the defaults (see docs/depths-and-schedules.md)
    arg:str:destinations:Destination addresses of a tumble, separated by commas
    arg:str:name:A name for the schedule
    arg:int:max_attempts:Attempts per step before the schedule stops (default 3)
    """
    service = plugin.runner.schedules(wallet)
    dests = [d.strip() for d in (destinations or "").replace(" ", ",").split(",") if d.strip()]
    sched = service.create(steps=steps, tumbler=tumbler, destinations=dests, name=name,
                           max_attempts=_int_arg("max_attempts", max_attempts))
    return sched.summary()


@plugin_command("wp", PLUGIN_NAME)
async def schedule_start(self: "Commands", schedule_id: str,
                         plugin: "JoinMarketPlugin" = None,  # type: ignore[assignment]
                         wallet: Optional["Abstract_Wallet"] = None,
                         password: Optional[str] = None) -> dict:
    """Start or resume a schedule; it runs in the background (see schedule_status).

    arg:str:schedule_id:The schedule's id (schedule_status lists them)
    """
    return plugin.runner.schedules(wallet).start(schedule_id, password)


@plugin_command("w", PLUGIN_NAME)
async def schedule_status(self: "Commands", plugin: "JoinMarketPlugin" = None,  # type: ignore[assignment]
                          wallet: Optional["Abstract_Wallet"] = None,
                          schedule_id: Optional[str] = None) -> Any:
    """The schedules of this wallet, or one of them, with every step's state.

    arg:str:schedule_id:Only this schedule
    """
    return plugin.runner.schedules(wallet).status(schedule_id)


@plugin_command("w", PLUGIN_NAME)
async def schedule_stop(self: "Commands", plugin: "JoinMarketPlugin" = None,  # type: ignore[assignment]
                        wallet: Optional["Abstract_Wallet"] = None,
                        schedule_id: Optional[str] = None) -> dict:
    """Stop the running schedule (the coinjoin in progress is cancelled); resume it later with
    schedule_start.

    arg:str:schedule_id:Only if this one is running
    """
    service = plugin.runner.schedules(wallet)
    running = service.running_id
    stopped = service.stop(schedule_id)
    if stopped:
        await service.wait(60)
    return {"stopped": stopped, "schedule": running,
            "status": service.status(running) if running else None}


@plugin_command("w", PLUGIN_NAME)
async def schedule_address(self: "Commands", schedule_id: str, step: Any, address: str,
                           plugin: "JoinMarketPlugin" = None,  # type: ignore[assignment]
                           wallet: Optional["Abstract_Wallet"] = None) -> dict:
    """Give a schedule step that asks for one (ADDRASK) its destination address.

    arg:str:schedule_id:The schedule's id
    arg:int:step:Step number (1 = first)
    arg:str:address:Destination address (of another wallet)
    """
    sched = plugin.runner.schedules(wallet).set_destination(schedule_id, _int_arg("step", step),
                                                             address)
    return sched.summary()

