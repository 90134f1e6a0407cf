"""Coinjoins as jobs, fitted to Electrum's RPC model (one request, answered within the client's
``timeout``, 60 s by default; a coinjoin takes minutes).

* ``joinmarket_coinjoin`` checks the request (one-line errors for user mistakes, before anything
  runs), starts the coinjoin as a :class:`Job` on Electrum's loop and answers at once with the
  job id; ``--wait`` keeps the request open for at most :func:`wait_budget` seconds.
* ``joinmarket_progress`` shows the job (stage, makers, seconds left, the outcome); ``--wait``
  long-polls within the same budget, and with ``since=N`` answers as soon as there is a line
  after the first N (what the CLI client's follow loop uses: see :mod:`cli_client`).
* ``joinmarket_cancel`` cancels the wallet's running coinjoin — unless it is past the point of
  no return (its signed transaction is being broadcast), which it says.

Invariants:

* One job per wallet at a time (the wallet session's role says so; the runner enforces it).
* The job's **log** has one line per change of what the user is told (a progress message
  repeated while waiting, e.g. "3 offers from 3 makers" every second, is one line), bounded.
* A cancellation is decided on Electrum's loop, the loop the taker runs on: if the taker has not
  reached the broadcast stage when the decision is made, the ``CancelledError`` lands at the
  await the taker is suspended at, before any signature of ours exists (the taker signs only
  right before it enters the broadcast stage, with no await in between). So "cancelled" means
  nothing of ours was signed or sent. Should the ``CancelledError`` be lost on the way (an await
  that swallows it: every timed wait uses :func:`jmcore.aio.wait_for` for that reason), the
  taker still stops right before signing: it checks the task's pending cancellations and the
  job's ``cancel_requested`` (taker invariant 3).
"""
from __future__ import annotations

import asyncio
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from jmcore.aio import wait_for

__all__ = ["Job", "JobRegistry", "wait_budget", "electrum_command", "LOG_LIMIT",
           "NO_RETURN_STAGES"]

LOG_LIMIT = 300
"""Lines kept per job (the first and the newest are kept; the middle is dropped)."""
NO_RETURN_STAGES = frozenset({"broadcast", "done"})
"""Taker stages after which a cancellation cannot be honoured (signed and being broadcast)."""
MAKER_STAGES = frozenset({"fill", "ioauth", "maker-rejected", "maker-unchecked", "tx", "sigs",
                          "broadcast", "done"})
"""Stages that mean our ``!fill`` went out: the coinjoin reached makers (and used a commitment)."""
FINISHED = ("success", "failed", "cancelled")


def wait_budget(config: Any, margin: float = 8.0) -> float:
    """How long a ``--wait`` request may stay open: the CLI client gives up after its config's
    ``timeout`` (``SimpleConfig.CLI_TIMEOUT``, 60 s default; client and daemon read the same
    config file), minus a margin for the round trip and the client's start. At least 1 s."""
    try:
        timeout = float(config.CLI_TIMEOUT)
    except Exception:
        timeout = 60.0
    return max(1.0, timeout - margin)


def electrum_command(config: Any, command: str, *args: str) -> str:
    """The ``electrum`` command line that reaches *this* Electrum (its chain flag and ``-D`` when
    not the defaults), so a suggestion in a message works as written."""
    import shlex

    from electrum.util import user_dir
    parts = ["electrum"]
    try:
        chain = config.get_selected_chain()
        if chain.NET_NAME != "mainnet":
            parts.append(f"--{chain.cli_flag()}")
        root = config.electrum_path_root()
        if os.path.realpath(root) != os.path.realpath(user_dir()):
            parts += ["-D", root]
    except Exception:          # a config without these (tests): plain electrum
        pass
    parts += [command, *args]
    return " ".join(shlex.quote(str(p)) for p in parts)


@dataclass
class Job:
    """One coinjoin run of one wallet, as the commands show it."""
    id: str
    wallet: str                       # the wallet's file name (what -w names)
    wallet_path: str
    request: dict                     # what was asked: amount, destination, makers, limits
    started: float = field(default_factory=time.time)
    state: str = "running"            # running | success | failed | cancelled
    stage: str = "starting"
    progress: dict = field(default_factory=dict)   # the last progress event
    log: list = field(default_factory=list)        # [{"t": s since start, "stage", "line"}]
    dropped_lines: int = 0
    outcome: Optional[dict] = None
    reached_makers: bool = False
    cancel_requested: bool = False
    finished: Optional[float] = None
    task: Any = None                  # asyncio.Task on Electrum's loop
    hints: dict = field(default_factory=dict)      # commands that follow / cancel this job
    _changed: Optional[asyncio.Event] = None

    # -------------------------------------------------------------- updates (loop thread)
    def on_progress(self, event: dict) -> None:
        stage = str(event.get("stage", self.stage))
        self.stage, self.progress = stage, dict(event)
        if stage in MAKER_STAGES:
            self.reached_makers = True
        line = str(event.get("message", ""))
        if line and (not self.log or self.log[-1]["line"] != line):
            self.log.append({"t": round(time.time() - self.started, 1), "stage": stage,
                             "line": line})
            if len(self.log) > LOG_LIMIT:           # keep the beginning and the end
                del self.log[LOG_LIMIT // 3]
                self.dropped_lines += 1
        self._notify()

    def finish(self, outcome: Optional[dict], *, state: Optional[str] = None,
               message: Optional[str] = None) -> None:
        self.outcome = outcome
        self.state = state or (outcome or {}).get("status") or "failed"
        self.finished = time.time()
        if message and (not self.log or self.log[-1]["line"] != message):
            self.log.append({"t": round(self.finished - self.started, 1), "stage": self.state,
                             "line": message})
        self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    # -------------------------------------------------------------- views
    @property
    def done(self) -> bool:
        return self.state in FINISHED

    @property
    def lines_total(self) -> int:
        return len(self.log) + self.dropped_lines

    def seconds_left(self) -> Optional[float]:
        left = self.progress.get("seconds_left")
        if left is None or self.done:
            return None
        elapsed = time.time() - float(self.progress.get("time", time.time()))
        return max(0.0, round(float(left) - elapsed, 1))

    def view(self, since: int = 0) -> dict:
        """What ``joinmarket_progress`` shows (JSON-able). ``since``: lines already seen."""
        first = max(0, since - self.dropped_lines)
        out: dict = {
            "job": self.id, "wallet": self.wallet, "state": self.state, "stage": self.stage,
            "started": self.started, "elapsed": round((self.finished or time.time()) - self.started, 1),
            "request": self.request,
            "lines": self.log[first:], "lines_total": self.lines_total,
        }
        for key in ("makers", "makers_asked", "makers_answered", "offers"):
            if key in self.progress:
                out[key] = self.progress[key]
        left = self.seconds_left()
        if left is not None:
            out["seconds_left"] = left
        if self.cancel_requested:
            out["cancel_requested"] = True
        if self.outcome is not None:
            out["outcome"] = self.outcome
        if not self.done:
            out.update(self.hints)
        return out

    async def wait(self, timeout: float, since: Optional[int] = None) -> None:
        """Return when the job is done, or (with ``since``) has more than ``since`` lines, or
        after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.done and (since is None or self.lines_total <= since):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._changed is None:
                self._changed = asyncio.Event()
            self._changed.clear()
            try:
                await wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                return


class JobRegistry:
    """The jobs of one plugin: the current or last job of every wallet (by file name and by id).
    Used on Electrum's loop only."""

    KEEP = 20

    def __init__(self, config: Any = None) -> None:
        self.config = config
        self._jobs: dict[str, Job] = {}           # id -> job, oldest first
        self._by_wallet: dict[str, str] = {}      # wallet path -> id of its newest job

    def new(self, wallet_path: str, wallet_name: str, request: dict) -> Job:
        job = Job(id="cj-" + secrets.token_hex(4), wallet=wallet_name, wallet_path=wallet_path,
                  request=request)
        job._changed = asyncio.Event()
        job.hints = {
            "follow": electrum_command(self.config, "joinmarket_progress", "-w", wallet_path, "--wait"),
            "cancel": electrum_command(self.config, "joinmarket_cancel", "-w", wallet_path)}
        self._jobs[job.id] = job
        self._by_wallet[wallet_path] = job.id
        while len(self._jobs) > self.KEEP:
            oldest = next(iter(self._jobs))
            if not self._jobs[oldest].done:
                break
            del self._jobs[oldest]
        return job

    def get(self, job_id: str) -> Optional[Job]:
        return self._jobs.get(job_id)

    def of_wallet(self, wallet_path: str) -> Optional[Job]:
        job_id = self._by_wallet.get(wallet_path)
        return self._jobs.get(job_id) if job_id else None

    def running(self) -> list[Job]:
        return [j for j in self._jobs.values() if not j.done]


# ---------------------------------------------------------------------------------------------
# the commands' bodies (``joinmarket_coinjoin``/``_progress``/``_cancel`` in __init__.py)

def failure_line(job: Job) -> str:
    """The one line a failed or cancelled job ends with (the CLI's error message)."""
    outcome = job.outcome or {}
    msg = outcome.get("message") or (job.log[-1]["line"] if job.log else job.state)
    if job.state == "cancelled":
        return (f"coinjoin {job.id} cancelled: nothing of yours was signed or broadcast; coins "
                f"unfrozen" + ("; the PoDLE commitment it used stays used" if job.reached_makers
                               else ""))
    return f"coinjoin {job.id} failed: {msg}"


def answer(job: Job, *, since: int = 0, raise_failure: bool) -> dict:
    """The job's view; a finished failed/cancelled job raises its one line when
    ``raise_failure`` (``--wait`` without ``since``: the exit status tells)."""
    from electrum_joinmarket.runner import RunnerError
    view = job.view(since)
    if job.done and job.state != "success":
        view["error"] = failure_line(job)
        if raise_failure:
            from electrum_joinmarket.errors import Failure
            kind = (job.outcome or {}).get("failure")
            raise RunnerError(view["error"], failure=Failure.CANCELLED if job.state == "cancelled"
                              else Failure(kind) if kind in Failure._value2member_map_
                              else Failure.INTERNAL)
    return view


def fee_limits_unset_text(config: Any) -> str:
    """FeeLimitsUnset for the command line: the two commands that set the limits, as they
    work for this Electrum (chain flag, data dir)."""
    from electrum_joinmarket.market.limits import ABS_EXAMPLE, REL_EXAMPLE
    rel = electrum_command(config, "setconfig", "plugins.joinmarket.max_cj_fee_rel", REL_EXAMPLE)
    abs_ = electrum_command(config, "setconfig", "plugins.joinmarket.max_cj_fee_abs", ABS_EXAMPLE)
    return (f"coinjoin fee limits are not set: a maker is refused only if its fee is above both; "
            f"set them with '{rel}' and '{abs_}' (your values), or give --max_cj_fee_rel and "
            f"--max_cj_fee_abs to this command")


async def cmd_coinjoin(plugin: Any, wallet: Any, password: Optional[str], amount: int,
                       destination: str, *, counterparties: Any = None, max_cj_fee_abs: Any = None,
                       max_cj_fee_rel: Any = None, broadcast: str = "self",
                       wait: bool = False, allow_script_mismatch: bool = False,
                       depth: Optional[int] = None) -> dict:
    from electrum_joinmarket.errors import UserError
    from electrum_joinmarket.market.limits import FeeLimitsUnset
    runner = plugin.runner
    try:
        limits = plugin.fee_limits(max_cj_fee_abs, max_cj_fee_rel)
    except FeeLimitsUnset as exc:
        raise UserError(fee_limits_unset_text(plugin.config), failure=exc.failure) from None
    overrides: dict = {"broadcast": broadcast}
    if counterparties is not None:
        overrides["n_makers"] = int(counterparties)
    config = runner.taker_config(amount, destination, limits=limits, **overrides)
    job = await runner.start_coinjoin_job(wallet, config, password,
                                          allow_script_mismatch=allow_script_mismatch,
                                          depth=depth)
    if wait:
        await job.wait(wait_budget(runner.plugin.config))
    return answer(job, raise_failure=wait)


async def cmd_progress(runner: Any, wallet: Any, wait: bool, since: Optional[int],
                       job_id: Optional[str]) -> dict:
    from electrum_joinmarket.runner import RunnerError
    job = runner.jobs.get(job_id) if job_id else runner.jobs.of_wallet(wallet.storage.path)
    if job is None or (job_id and job.wallet_path != wallet.storage.path):
        hist = electrum_command(runner.plugin.config, "joinmarket_history", "-w",
                                wallet.storage.path)
        raise RunnerError(f"no coinjoin {job_id + ' ' if job_id else ''}has run in this wallet "
                          f"since Electrum started; past ones: '{hist}'")
    if wait:
        await job.wait(wait_budget(runner.plugin.config), since)
    return answer(job, since=since or 0, raise_failure=wait and since is None)


async def cmd_cancel(runner: Any, wallet: Any) -> dict:
    from electrum_joinmarket.runner import RunnerError
    why_not = runner.cancel_now(wallet)
    if why_not:
        raise RunnerError(why_not)
    job = runner.jobs.of_wallet(wallet.storage.path)
    await job.wait(min(15.0, wait_budget(runner.plugin.config)))
    view = job.view()
    view["message"] = (failure_line(job) if job.state == "cancelled" else
                       f"cancellation requested; coinjoin {job.id} is {job.state}")
    return view
