"""Runs takers and makers for the plugin's wallet sessions (GUI-agnostic; used by the plugin
commands and the Qt tab). Everything here is a coroutine on Electrum's asyncio loop.

* One role at a time per wallet session (a taker run or a maker); a second start is refused
  with a clear message.
* The daemon is found or started through :class:`daemon_link.DaemonLink` (one per plugin).
* A coinjoin runs as a :class:`jobs.Job` (``joinmarket_coinjoin`` answers with its id at once;
  ``joinmarket_progress``/``joinmarket_cancel`` find it by wallet). The request is checked before
  the job starts: a user's mistake is an error of the command, not a job.
* Every coinjoin that reached makers (our ``!fill`` went out, so a commitment was used) is
  appended to the wallet's plugin storage (``history``) when it ends — success, failure or
  cancellation — and the wallet is saved, so history survives restarts. Input mistakes and
  runs that never reached a maker are not history.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from electrum_joinmarket import jobs as jobmod
from electrum_joinmarket.errors import Failure, UserError
from electrum_joinmarket.link.chanstatus import ChannelReport
from electrum_joinmarket.link.client import DaemonClient, DaemonError
from electrum_joinmarket.link.daemon import DaemonLink
from electrum_joinmarket.link.tor import TorResolution, resolve_tor
from electrum_joinmarket.logs import get_logger
from electrum_joinmarket.maker.maker import HISTORY_KEY as MAKER_HISTORY_KEY
from electrum_joinmarket.market.limits import FeeLimits
from electrum_joinmarket.stages import OutcomeStatus, Role, SessionState
from electrum_joinmarket.taker.taker import Taker, TakerConfig, TakerOutcome, check_request
from jmcore.aio import wait_for
from jmcore.channels import ChannelConfigError, ChannelSettings, build_chan_configs, no_directories_message

if TYPE_CHECKING:  # pragma: no cover
    from electrum_joinmarket.plugin import JoinMarketPlugin, WalletSession

log = get_logger(__name__)

HISTORY_KEY = "taker_history"
HISTORY_LIMIT = 500
MAKER_SETTINGS_KEY = "maker_settings"      # the offer settings used last (wallet file)
MAKER_AUTOSTART_KEY = "maker_autostart"    # start the maker when the wallet is loaded
MAKER_DEFAULTS = {"ordertype": "reloffer", "cjfee_r": "0.00002", "cjfee_a": 500, "txfee": 0,
                  "minsize": 100_000}


class RunnerError(UserError):
    """A request the user can fix (busy wallet, bad setting, no daemon): message says how."""


class ScriptTypeMismatch(RunnerError):
    """The destination would be the only coinjoin output of its script type (issue 14.12); the
    GUI asks the user, the CLI needs --allow_script_mismatch. ``warning``: the plain sentence."""

    def __init__(self, message: str, *, warning: str):
        super().__init__(message, failure=Failure.INPUT)
        self.warning = warning


async def _wait_synced(wallet: Any, timeout: float) -> bool:
    """Wait (at most ``timeout`` s) until the wallet is up to date with its server."""
    deadline = time.monotonic() + timeout
    while not wallet.is_up_to_date():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def jm_network_name() -> str:
    """JoinMarket's network name for the chain Electrum runs on."""
    from electrum import constants
    net = constants.net.NET_NAME
    return {"mainnet": "mainnet", "testnet": "testnet", "testnet4": "testnet",
            "signet": "signet", "regtest": "regtest"}.get(net, net)


class Runner:
    """Per-plugin service object; see module docstring."""

    def __init__(self, plugin: "JoinMarketPlugin"):
        self.plugin = plugin
        self.link: Optional[DaemonLink] = None
        self.last_tor: Optional[TorResolution] = None
        self.jobs = jobmod.JobRegistry(plugin.config)

    # ---------------------------------------------------------------- daemon
    async def daemon_address(self) -> tuple[str, int]:
        """A usable daemon (running, or started by the link); RunnerError if none.

        The daemon settings (``daemon_host``, ``daemon_port``, ``daemon_binary``,
        ``daemon_datadir``, ``daemon_autostart``, ``daemon_in_process``) are read again each
        time: a change applies at the next use — the daemon this Electrum started for the old
        settings is stopped — unless a coinjoin or a maker still uses the old daemon, which is
        said (no silent restart under a running session)."""
        wanted = DaemonLink.from_config(self.plugin.config)
        if self.link is not None and self.link.settings != wanted.settings:
            changes = "; ".join(f"plugins.joinmarket.{k} {a!r} -> {b!r}" for k, a, b in
                                self.link.settings_diff(wanted))
            users = [f"coinjoin {j.id} ({j.wallet})" for j in self.jobs.running()]
            users += [f"the maker of {s.wallet_name}" for s in self.plugin.sessions()
                      if getattr(s, "maker", None) is not None]
            if users:
                raise RunnerError(f"the daemon settings changed ({changes}) while "
                                  f"{', '.join(users)} uses the current daemon; they apply once "
                                  f"it ends")
            old, self.link = self.link, None
            log.info("daemon settings changed (%s): leaving the old daemon", changes)
            await old.stop()                       # only a daemon this Electrum started
        if self.link is None:
            self.link = wanted
        else:      # the setting may have changed since the link was made
            self.link.authentication = bool(self.plugin.config.JM_DAEMON_AUTHENTICATION)
        state = await self.link.ensure()
        if not state.usable:
            raise RunnerError(state.text, failure=Failure.DAEMON)
        return self.link.address

    def channel_settings(self) -> ChannelSettings:
        """The user's channel choice (``plugins.joinmarket.channels``; unset = the network's
        default directories over Tor)."""
        try:
            return ChannelSettings.from_setting(self.plugin.config.JM_CHANNELS)
        except ChannelConfigError as exc:
            raise RunnerError(str(exc)) from None

    def chan_configs(self, role: str = "TAKER") -> list[dict]:
        """Complete JMInit channel configs from the settings, with Tor at its pinned or default
        port (no probing: for display; runs use :meth:`channel_configs`)."""
        try:
            return build_chan_configs(self.channel_settings(), jm_network_name(), role=role)
        except ChannelConfigError as exc:
            raise RunnerError(str(exc)) from None

    async def channel_configs(self, role: str, network: Any = None) -> list[dict]:
        """Complete JMInit channel configs for ``role`` with the Tor that is really there
        (:func:`link.tor.resolve_tor`); RunnerError with the one message a user needs when the
        channels need Tor and none is found, or nothing is configured for this network."""
        settings = self.channel_settings()
        net = jm_network_name()
        tor = None
        explicit = settings.raw is not None and any("socks5_port" in c for c in settings.raw)
        if settings.needs_tor(net) and not explicit:
            self.last_tor = await resolve_tor(settings, network)
            if not self.last_tor.ok:
                raise RunnerError(self.last_tor.message, failure=Failure.DAEMON)
            tor = self.last_tor.endpoints
        try:
            return build_chan_configs(settings, net, role=role, tor=tor)
        except ChannelConfigError as exc:
            raise RunnerError(str(exc)) from None

    @staticmethod
    def _network() -> Any:
        """Electrum's Network (for its proxy), if one runs."""
        try:
            from electrum.network import Network
            return Network.get_instance()
        except Exception:
            return None

    # ---------------------------------------------------------------- taker
    def taker_config(self, amount: int, destination: str, *, limits: Optional[FeeLimits] = None,
                     **overrides: Any) -> TakerConfig:
        """A TakerConfig from the settings; ``overrides`` win. ``limits`` default to the
        settings' fee limits, which must be set (:class:`FeeLimitsUnset` otherwise): an unset
        limit never means 'any fee'."""
        c = self.plugin.config
        if limits is None:
            limits = self.plugin.fee_limits()
        n = overrides.pop("n_makers", None) or c.JM_COUNTERPARTIES or 8
        base: dict[str, Any] = dict(
                    amount=amount, destination=destination, limits=limits, n_makers=int(n),
                    minimum_makers=min(int(c.JM_MINIMUM_MAKERS), int(n)),
                    chooser=self.plugin.order_chooser_name(),
                    orderbook_max_wait=float(c.JM_ORDERBOOK_WAIT),
                    orderbook_min_wait=min(20.0, float(c.JM_ORDERBOOK_WAIT)),
                    maker_timeout_sec=int(c.JM_MAKER_TIMEOUT),
                    channels_timeout=float(c.JM_CHANNELS_TIMEOUT),
                    fallback_feerate=int(c.JM_FALLBACK_FEE_RATE),
                    max_feerate=int(c.JM_MAX_FEE_RATE))
        base.update(overrides)
        return TakerConfig(**base)

    def depth_coins(self, session: "WalletSession", config: TakerConfig,
                    depth: Optional[int]) -> int:
        """Restrict ``config.coins`` to one depth (the plugin never spends two depths in one
        transaction): the user's selection must lie in one depth; without one, the coins of
        ``depth``, or of the lowest depth whose balance covers the amount. Returns the depth."""
        from electrum_joinmarket.depths.record import DepthError
        rec = session.depths
        try:
            if config.coins:
                chosen = rec.check_one_depth(config.coins)
                if depth is not None and depth != chosen:
                    raise RunnerError(f"the selected coins are in depth {chosen}, not {depth}")
                return chosen
            if depth is None:
                balances = rec.balances()
                fits = [d for d, b in sorted(balances.items())
                        if b > 0 and (config.amount == 0 or b > config.amount)]
                total = sum(balances.values())
                if not fits and total and config.amount >= total:
                    raise RunnerError(   # the same words as the taker's own check
                        f"amount {config.amount} sat is not below the spendable balance {total} "
                        f"sat (fees must fit too); use sweep (amount 0) to spend all")
                if not fits and total:
                    raise RunnerError(
                        "no depth holds enough confirmed coins for this amount (the plugin "
                        "spends one depth at a time: " + ", ".join(
                            f"depth {d}: {b} sat" for d, b in balances.items() if b) + ")")
                if not fits and not session.wallet.is_up_to_date():
                    raise RunnerError(
                        "the wallet is still synchronising with its Electrum server; try again "
                        "in a moment (electrum getinfo / the status bar says when it is done)")
                if not fits:
                    raise RunnerError("no confirmed coins to spend")
                if config.amount == 0 and len(fits) > 1:
                    raise RunnerError("a sweep empties one depth: say which (" + ", ".join(
                        f"depth {d}: {balances[d]} sat" for d in fits) + ")")
                depth = fits[0]
            config.coins = rec.spendable_outpoints(depth)
            if not config.coins:
                raise RunnerError(f"depth {depth} has no confirmed, unfrozen coins")
            return depth
        except DepthError as exc:
            raise RunnerError(str(exc), failure=exc.failure) from None

    def busy_reason(self, session: "WalletSession", *,
                    for_schedule: bool = False) -> Optional[str]:
        """Why ``session``'s wallet cannot start a coinjoin or a maker now (None if it can); the
        reason names the command that ends what is running. ``for_schedule``: a step of the
        wallet's running schedule asks (the schedule itself is not in the way)."""
        job = getattr(session, "job", None)
        path = session.wallet.storage.path
        schedules = session.schedules
        if not for_schedule and schedules is not None and schedules.busy:
            cmd = jobmod.electrum_command(self.plugin.config, "joinmarket_schedule_stop", "-w",
                                          path)
            return (f"this wallet is busy: schedule {schedules.running_id} is running; stop it "
                    f"with '{cmd}'")
        if job is not None and not job.done:
            return (f"this wallet is busy: coinjoin {job.id} is running; follow it with "
                    f"'{job.hints['follow']}' or cancel it with '{job.hints['cancel']}'")
        if session.role == "maker":
            cmd = jobmod.electrum_command(self.plugin.config, "joinmarket_stop_maker", "-w", path)
            return f"this wallet is busy: its maker is running; stop it with '{cmd}'"
        if session.role is not None:
            return f"this wallet is busy ({session.role} running)"
        return None

    def check_coinjoin(self, wallet: Any, config: TakerConfig, password: Optional[str], *,
                       allow_script_mismatch: bool = False, depth: Optional[int] = None,
                       for_schedule: bool = False) -> Optional[str]:
        """Everything about the request that the user can get wrong, before anything runs;
        RunnerError with what to change. Restricts ``config.coins`` to one depth
        (:meth:`depth_coins`). Returns the script-type warning the user overrode."""
        from electrum_joinmarket.tx.privacy import TYPE_NAMES, coinjoin_output_type, destination_type_warning
        session = self.plugin.session_for(wallet)
        busy = self.busy_reason(session, for_schedule=for_schedule)
        if busy:
            raise RunnerError(busy)
        self.depth_coins(session, config, depth)
        check_request(wallet, config, password)        # TakerError: a UserError, one line
        warning = destination_type_warning(config.destination, wallet.txin_type)
        if warning and not allow_script_mismatch:
            want = coinjoin_output_type(wallet.txin_type)
            raise ScriptTypeMismatch(f"{warning}; use a {TYPE_NAMES.get(want, want)} address, or "
                                     f"add --allow_script_mismatch to go ahead anyway",
                                     warning=warning)
        return warning

    async def start_coinjoin_job(self, wallet: Any, config: TakerConfig, password: Optional[str], *,
                                 progress: Optional[Callable[[dict], None]] = None,
                                 confirm: Optional[Callable[[dict], Any]] = None,
                                 allow_script_mismatch: bool = False,
                                 depth: Optional[int] = None, ignored: Optional[dict] = None,
                                 for_schedule: bool = False) -> jobmod.Job:
        """Check the request, make sure a daemon answers, and start the coinjoin of coins of one
        depth as a job (on this, Electrum's, loop); returns at once. RunnerError for anything
        the user must fix. ``ignored``: makers a schedule's earlier attempts blamed."""
        session = self.plugin.session_for(wallet)
        await _wait_synced(wallet, 10.0)          # a wallet just loaded: its coins, not "none"
        warning = self.check_coinjoin(wallet, config, password,
                                      allow_script_mismatch=allow_script_mismatch, depth=depth,
                                      for_schedule=for_schedule)
        host, port = await self.daemon_address()
        chan_configs = await self.channel_configs("TAKER", wallet.network)
        busy = self.busy_reason(session, for_schedule=for_schedule)   # again: others ran
        if busy:
            raise RunnerError(busy)
        request = {"destination": config.destination, "amount": config.amount,
                   "sweep": config.amount == 0, "counterparties": config.n_makers,
                   "minimum_makers": config.minimum_makers, "broadcast": config.broadcast,
                   "script_type_warning": warning}
        job = self.jobs.new(wallet.storage.path, wallet.basename(), request)
        session.job = job
        session.role, session.state = Role.TAKER, SessionState.STARTING
        job.task = asyncio.get_running_loop().create_task(
            self._run_taker(job, session, config, password, host, port, chan_configs,
                            progress, confirm, ignored),
            name=f"joinmarket {job.id}")
        job.task.add_done_callback(lambda t: self._task_ended(job, session, t))
        return job

    @staticmethod
    def _task_ended(job: jobmod.Job, session: "WalletSession", task: "asyncio.Task") -> None:
        """A task cancelled before its first step never ran _run_taker's cleanup."""
        if job.done:
            return
        session.role, session.taker, session.state = None, None, SessionState.IDLE
        if task.cancelled():
            job.finish({"status": "cancelled", "message": "cancelled before it started"},
                       state="cancelled")
        else:
            job.finish(None, state="failed", message=f"internal error: {task.exception()!r}")

    async def _run_taker(self, job: jobmod.Job, session: "WalletSession", config: TakerConfig,
                         password: Optional[str], host: str, port: int, chan_configs: list[dict],
                         progress: Optional[Callable[[dict], None]],
                         confirm: Optional[Callable[[dict], Any]],
                         ignored: Optional[dict] = None) -> TakerOutcome:
        wallet = session.wallet

        def on_progress(event: dict) -> None:
            session.state = event.get("stage", session.state)
            session.last_progress = event
            job.on_progress(event)
            if progress is not None:
                progress(event)
        try:
            taker = Taker(wallet=wallet, network=wallet.network, commitments=session.commitments,
                          config=config, password=password, daemon_host=host, daemon_port=port,
                          chan_configs=chan_configs, net_name=jm_network_name(),
                          progress=on_progress, confirm=confirm, frozen_store=session.storage,
                          depths=session.depths, cancel_requested=lambda: job.cancel_requested)
            taker.ignored.update(ignored or {})
            session.taker = taker
            outcome = await taker.run()        # never raises; a cancellation is an outcome
        except BaseException as exc:
            job.finish(None, state="failed", message=f"internal error: {exc!r}")
            raise
        finally:
            session.role, session.taker = None, None
            session.state = SessionState.IDLE
        result = outcome.to_dict()
        if outcome.status == "success" and outcome.txid:
            self._label(wallet, outcome, result)
        if job.reached_makers:
            self._record(session, config, outcome, extra=result)
        if outcome.status == OutcomeStatus.SUCCESS and outcome.txid:
            session.depths.note_coinjoin(outcome.txid, outcome.cj_amount)
        job.finish(result, message=None if outcome.status == "success" else
                   f"{outcome.status}: {outcome.message}")
        return outcome

    @staticmethod
    def _label(wallet: Any, outcome: TakerOutcome, facts: dict) -> None:
        """Label the coinjoin and our change in Electrum's own history (a user's own label on
        the transaction is kept)."""
        txid = outcome.txid
        if not txid:
            return
        n = facts.get("anonymity_set")
        try:
            if not wallet.get_label_for_txid(txid):
                wallet.set_label(txid, f"JoinMarket coinjoin, {n} equal outputs")
            tx = wallet.adb.get_transaction(txid)
            for o in tx.outputs() if tx is not None else []:
                addr = o.address
                if (addr and o.value != outcome.cj_amount and wallet.is_mine(addr)
                        and wallet.is_change(addr) and not wallet.get_label_for_address(addr)):
                    wallet.set_label(addr, f"JoinMarket change of {txid[:16]}…")
        except Exception:          # a label is a courtesy: never fail a finished coinjoin
            log.exception("could not label coinjoin %s", txid)

    async def coinjoin(self, wallet: Any, config: TakerConfig, password: Optional[str], *,
                       progress: Optional[Callable[[dict], None]] = None,
                       confirm: Optional[Callable[[dict], Any]] = None,
                       allow_script_mismatch: bool = False,
                       depth: Optional[int] = None, ignored: Optional[dict] = None,
                       for_schedule: bool = False) -> TakerOutcome:
        """Run one coinjoin of coins of one depth for ``wallet`` to its end; returns its
        outcome."""
        job = await self.start_coinjoin_job(wallet, config, password, progress=progress,
                                            confirm=confirm,
                                            allow_script_mismatch=allow_script_mismatch,
                                            depth=depth, ignored=ignored,
                                            for_schedule=for_schedule)
        return await job.task

    def cancel(self, wallet: Any) -> bool:
        """Cancel the wallet's running coinjoin unless it is past the point of no return; safe
        to call from any thread. True if a cancellation was requested (see :meth:`cancel_now`)."""
        from electrum.util import get_asyncio_loop
        loop = get_asyncio_loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return self.cancel_now(wallet) is None
        loop.call_soon_threadsafe(self.cancel_now, wallet)
        return True

    def cancel_now(self, wallet: Any) -> Optional[str]:
        """On Electrum's loop: cancel the wallet's running coinjoin; None if done, else why not.
        Decided here, on the taker's loop, so the taker cannot move on meanwhile (module
        docstring of :mod:`jobs`)."""
        job = self.jobs.of_wallet(wallet.storage.path)
        if job is None or job.done or job.task is None:
            return "no coinjoin is running in this wallet"
        if asyncio.current_task() is job.task:
            # called from the taker's own progress callback: the cancellation would only land
            # at its *next* await, perhaps past the point of no return; decide there instead
            asyncio.get_running_loop().call_soon(self.cancel_now, wallet)
            return None
        if job.stage in jobmod.NO_RETURN_STAGES:
            return (f"too late to cancel coinjoin {job.id}: it is signed and being broadcast "
                    f"({job.progress.get('message', '')}); follow it with '{job.hints['follow']}'")
        job.cancel_requested = True
        job.task.cancel()
        return None

    def start_coinjoin_task(self, wallet: Any, config: TakerConfig, password: Optional[str],
                            **kw: Any) -> "concurrent.futures.Future[TakerOutcome]":
        """Start :meth:`coinjoin` as a task on Electrum's loop (thread-safe); cancellable with
        :meth:`cancel`. Returns a concurrent future."""
        from electrum.util import get_asyncio_loop
        return asyncio.run_coroutine_threadsafe(self.coinjoin(wallet, config, password, **kw),
                                                get_asyncio_loop())

    def _record(self, session: "WalletSession", config: TakerConfig, outcome: TakerOutcome,
                extra: Optional[dict] = None) -> None:
        extra = extra or {}
        entry = {"role": "taker", "anonymity_set": extra.get("anonymity_set"),
                 "fee_rate": extra.get("fee_rate"),
                 "time": time.time(), "status": str(outcome.status), "message": outcome.message,
                 "failure": None if outcome.failure is None else str(outcome.failure),
                 "txid": outcome.txid, "cj_amount": outcome.cj_amount,
                 "destination": outcome.destination or config.destination, "makers": outcome.makers,
                 "maker_fees": outcome.maker_fees, "miner_fee": outcome.miner_fee,
                 "taker_miner_fee": outcome.taker_miner_fee, "total_cost": outcome.total_cost,
                 "sweep": config.amount == 0}
        history = list(session.storage.get(HISTORY_KEY, []))
        history.append(entry)
        session.storage[HISTORY_KEY] = history[-HISTORY_LIMIT:]
        session.wallet.save_db()

    def history(self, wallet: Any) -> list[dict]:
        """Coinjoins of this wallet, taker and maker side, oldest first."""
        taker = [dict(h, role=h.get("role") or "taker")
                 for h in self.plugin.session_for(wallet).storage.get(HISTORY_KEY, [])]
        return sorted(taker + self.maker_history(wallet), key=lambda r: r.get("time", 0))

    # ---------------------------------------------------------------- channels, for people
    def _live_reports(self) -> list[ChannelReport]:
        out = []
        for session in self.plugin.sessions():
            for role in (getattr(session, "taker", None), getattr(session, "maker", None)):
                client = getattr(role, "client", None)
                report = getattr(client, "last_report", None)
                if report is not None:
                    out.append(report)
        return out

    async def channel_report(self, check: Optional[float] = None) -> dict:
        """What ``joinmarket_status`` shows about the message channels: the network, where each
        directory comes from (default / added / configured), whether Tor is there (a local
        check, nothing leaves the machine), and each directory's state — from a running coinjoin
        or maker, or, with ``check`` seconds, from a passive connection made now through the
        daemon (it stops as soon as every directory has answered or failed once)."""
        net = jm_network_name()
        out: dict[str, Any] = {"network": net}
        try:
            settings = self.channel_settings()
        except RunnerError as exc:
            out["problem"] = str(exc)
            return out
        setting = settings.to_setting() if settings.raw is None else "older channel list"
        out["settings"] = setting or "defaults (plugins.joinmarket.channels is unset)"
        dirs = settings.effective_directories(net)
        out["irc"] = [f"{s.host}:{s.port} #{s.channel}{' via Tor' if s.tor else ''}"
                      for s in settings.irc]
        problem = None
        if not dirs and not settings.irc and settings.raw is None:
            problem = no_directories_message(net)
        if settings.needs_tor(net):
            tor = await resolve_tor(settings, self._network())
            self.last_tor = tor
            out["tor"] = tor.to_dict()
            if not tor.ok:
                problem = problem or tor.message
        else:
            out["tor"] = {"needed": False}
        states: dict[str, dict] = {}
        reports = self._live_reports()
        if check and problem is None:
            try:
                report = await self._check_channels(float(check))
                reports = [report] if report is not None else reports
                out["checked_for_s"] = float(check)
            except (RunnerError, DaemonError) as exc:
                problem = str(exc)
        for report in reports:
            for d in report.directories():
                states[str(d.get("location"))] = d
        if not reports and problem is None:
            out["hint"] = ("no coinjoin or maker is running, so no directory is connected; "
                           "`electrum joinmarket_status --check 60` connects to them now")
        idle = "not connected"
        out["directories"] = [
            {"location": loc, "source": source,
             **({k: v for k, v in states[loc].items() if k in ("state", "reason", "nick",
                                                               "attempts")}
                if loc in states else {"state": idle})}
            for loc, source in dirs]
        if reports:
            out["summary"] = reports[0].summary()
            live = [d for r in reports for d in r.directories()]
            if problem is None and live and not any(d.get("state") == "up" for d in live) \
                    and all(d.get("reason") for d in live):
                problem = (f"no directory node could be reached: {reports[0].summary()}"
                           + ("" if out.get("checked_for_s") else
                              ". The daemon keeps retrying them."))
        out["problem"] = problem
        return out

    async def _check_channels(self, wait: float) -> Optional[ChannelReport]:
        """A passive session through the daemon for at most ``wait`` seconds: connects to every
        directory, reports, disconnects. Returns the daemon's last report (None if it gives
        none)."""
        host, port = await self.daemon_address()
        chan_configs = await self.channel_configs("PASSIVE", self._network())
        client = DaemonClient(network=jm_network_name(), chan_configs=chan_configs)
        try:
            await client.connect(host, port)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait
            report = None
            while loop.time() < deadline:
                report = await client.channel_status()
                if report is None:
                    return None
                if report.fatal():
                    raise RunnerError(report.fatal())
                dirs = report.directories()
                if dirs and all(d.get("state") == "up" or d.get("reason") for d in dirs):
                    break                      # every directory answered or failed once
                await asyncio.sleep(1.0)
            return await client.channel_status() or report
        finally:
            client.close()

    # ---------------------------------------------------------------- orderbook
    async def orderbook(self, wait: Optional[float] = None,
                        on_report: Optional[Callable[[ChannelReport], None]] = None) -> dict:
        """A one-off look at the orderbook through the daemon (as a taker that fills nothing):
        {"offers": [...], "fidelitybonds": [...]}."""
        host, port = await self.daemon_address()
        chan_configs = await self.channel_configs("PASSIVE", self._network())
        wait = float(self.plugin.config.JM_ORDERBOOK_WAIT if wait is None else wait)
        got: dict = {}
        event = asyncio.Event()

        class Book:
            def on_JMOffers(self, orderbook: str, fidelitybonds: str) -> None:
                got["offers"], got["fidelitybonds"] = orderbook, fidelitybonds
                event.set()
        client = DaemonClient(network=jm_network_name(), chan_configs=chan_configs,
                              handler=Book())
        try:
            await client.connect(host, port)
            await client.wait_up(float(self.plugin.config.JM_CHANNELS_TIMEOUT), on_report=on_report)
            await client.setup("TAKER")
            await asyncio.sleep(wait)
            await client.call("JMRequestOffers")
            await wait_for(event.wait(), 30)
        except asyncio.TimeoutError:
            raise DaemonError("the daemon sent no orderbook") from None
        finally:
            client.close()
        try:
            return {"offers": json.loads(got["offers"]),
                    "fidelitybonds": json.loads(got["fidelitybonds"])}
        except (KeyError, ValueError):
            raise DaemonError("the daemon sent a malformed orderbook") from None

    # ---------------------------------------------------------------- maker
    def maker_settings(self, wallet: Any, given: Optional[dict] = None) -> dict:
        """The wallet's offer settings: what was given, else what was used last time (kept in
        the wallet file), else the defaults."""
        stored = self.plugin.session_for(wallet).storage.get(MAKER_SETTINGS_KEY) or {}
        out = {k: v for k, v in MAKER_DEFAULTS.items()}
        out.update({k: v for k, v in dict(stored).items() if k in MAKER_DEFAULTS})
        out.update({k: v for k, v in (given or {}).items() if v is not None and k in MAKER_DEFAULTS})
        return out

    def maker_autostart(self, wallet: Any) -> bool:
        return bool(self.plugin.session_for(wallet).storage.get(MAKER_AUTOSTART_KEY))

    def set_maker_autostart(self, wallet: Any, on: bool) -> None:
        session = self.plugin.session_for(wallet)
        session.storage[MAKER_AUTOSTART_KEY] = bool(on)
        wallet.save_db()

    async def start_maker(self, wallet: Any, password: Optional[str], *,
                          autostart: Optional[bool] = None, **settings: Any) -> dict:
        """Start the wallet's maker with ``settings`` (None/absent: the wallet's remembered
        ones); remembers them, and ``autostart`` if given, in the wallet file once it runs."""
        from electrum_joinmarket.maker.maker import Maker, MakerSettings
        session = self.plugin.session_for(wallet)
        busy = self.busy_reason(session)
        if busy:
            raise RunnerError(busy)
        chosen = self.maker_settings(wallet, settings)
        maker_settings = MakerSettings(**chosen)          # MakerError (one line) if invalid
        host, port = await self.daemon_address()
        chan_configs = await self.channel_configs("MAKER", wallet.network)
        maker = Maker(wallet, maker_settings, password=password,
                      storage=session.storage, electrum_network=wallet.network,
                      depths=session.depths)
        session.role, session.state = Role.MAKER, SessionState.STARTING
        try:
            await maker.start(host, port, chan_configs, network=jm_network_name())
        except BaseException:
            session.role, session.state = None, SessionState.IDLE
            raise
        session.maker, session.state = maker, SessionState.RUNNING
        session.storage[MAKER_SETTINGS_KEY] = chosen
        if autostart is not None:
            session.storage[MAKER_AUTOSTART_KEY] = bool(autostart)
        session.autostart_note = None
        wallet.save_db()
        return self.maker_status(wallet)

    def maker_status(self, wallet: Any) -> dict:
        """The maker as ``joinmarket_start_maker``/``status`` show it, running or not: its
        settings, auto-start, and the earnings kept in the wallet file."""
        session = self.plugin.session_for(wallet)
        maker = getattr(session, "maker", None)
        out = dict(maker.status()) if maker is not None else {"running": False}
        earned = self.maker_history(wallet)
        out.update(settings=self.maker_settings(wallet), autostart=self.maker_autostart(wallet),
                   coinjoins=len(earned), earned_total=sum(int(r.get("earned", 0)) for r in earned))
        note = getattr(session, "autostart_note", None)
        if note:
            out["autostart_note"] = note
        return out

    def stop_maker(self, wallet: Any, autostart: Optional[bool] = None) -> bool:
        session = self.plugin.session_for(wallet)
        if autostart is not None:
            self.set_maker_autostart(wallet, autostart)
        maker = getattr(session, "maker", None)
        if maker is None:
            return False
        maker.stop()
        session.maker, session.role, session.state = None, None, SessionState.IDLE
        return True

    def maybe_autostart_maker(self, wallet: Any) -> None:
        """When a wallet is loaded: start its maker if the user asked for auto-start (from any
        thread; runs on Electrum's loop). A wallet whose keys are encrypted needs its password:
        only when Electrum has it unlocked; else the reason is kept for the status."""
        if not self.maker_autostart(wallet):
            return
        from electrum.util import get_asyncio_loop

        async def start() -> None:
            session = self.plugin.session_for(wallet)
            if session.role is not None:
                return
            password = None
            if wallet.has_keystore_encryption():
                password = wallet.get_unlocked_password()
                if not password:
                    session.autostart_note = (
                        "maker auto-start is waiting for the wallet's password: unlock it ("
                        + jobmod.electrum_command(self.plugin.config, "unlock", "-w",
                                                  wallet.storage.path)
                        + ") and start it with "
                        + jobmod.electrum_command(self.plugin.config, "joinmarket_start_maker",
                                                  "-w", wallet.storage.path))
                    log.info("%s", session.autostart_note)
                    return
            try:
                await self.start_maker(wallet, password)
                log.info("maker of %s auto-started", wallet.basename())
            except Exception as exc:          # said in the status; Electrum keeps running
                session.autostart_note = f"maker auto-start failed: {exc}"
                log.warning("%s", session.autostart_note)
        asyncio.run_coroutine_threadsafe(start(), get_asyncio_loop())

    def maker_history(self, wallet: Any) -> list[dict]:
        hist = self.plugin.session_for(wallet).storage.get(MAKER_HISTORY_KEY) or {}
        rows = [dict(r, role="maker") for r in (hist.values() if isinstance(hist, dict) else [])]
        return sorted(rows, key=lambda r: r.get("time", 0))

    # ---------------------------------------------------------------- schedules
    def schedules(self, wallet: Any) -> Any:
        """The wallet's :class:`~electrum_joinmarket.schedule.service.ScheduleService`."""
        return self.schedules_of(self.plugin.session_for(wallet))

    def schedules_of(self, session: "WalletSession") -> Any:
        if session.schedules is None:
            from electrum_joinmarket.schedule.service import ScheduleService
            wallet = session.wallet

            async def execute(req: Any, progress: Callable[[dict], None],
                              password: Optional[str]) -> TakerOutcome:
                config = self.taker_config(req.amount, req.destination,
                                           n_makers=req.counterparties)
                config.coins = list(req.coins)
                return await self.coinjoin(wallet, config, password, progress=progress,
                                           depth=req.depth, ignored=req.ignored_makers,
                                           for_schedule=True)
            c = self.plugin.config
            session.schedules = ScheduleService(
                wallet, session.storage, session.depths, session.commitments, execute,
                min_counterparties=int(c.JM_MINIMUM_MAKERS))
            session.schedules.precheck = self.plugin.fee_limits    # FeeLimitsUnset before a run
        return session.schedules

    def resume_schedules(self, session: "WalletSession") -> None:
        """After a wallet was loaded: resume (or mark interrupted) a schedule Electrum was
        running when it stopped. Thread-safe; runs on Electrum's loop."""
        from electrum.util import get_asyncio_loop
        service = self.schedules_of(session)
        if not service.interrupted():
            return

        async def go() -> None:
            try:
                service.on_wallet_loaded()
            except Exception:       # nobody awaits this future: say it here
                log.exception("could not resume the schedules of %s", session.wallet_name)
        try:
            asyncio.run_coroutine_threadsafe(go(), get_asyncio_loop())
        except Exception:
            log.exception("could not resume the schedules of %s", session.wallet_name)

    async def stop(self) -> None:
        """Plugin shutdown: stop makers, cancel takers, stop a daemon we started."""
        for session in self.plugin.sessions():
            if session.schedules is not None:
                session.schedules.stop()
            if getattr(session, "maker", None) is not None:
                session.maker.stop()
        for job in self.jobs.running():
            if job.task is not None and job.stage not in jobmod.NO_RETURN_STAGES:
                job.task.cancel()
        if self.link is not None:
            await self.link.stop()
