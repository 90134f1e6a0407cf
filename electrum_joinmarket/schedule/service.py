"""Schedules of one wallet session, for the plugin commands and the GUI (GUI-agnostic).

* One schedule runs at a time per wallet, as an asyncio task on Electrum's loop; while it runs
  the wallet's session is busy (no single coinjoin, no maker).
* The wallet password (if any) is checked when a schedule starts and held in memory only while
  it runs (like the maker's).
* When a wallet is loaded with a schedule that was running (Electrum stopped or was killed), the
  schedule resumes by itself if the wallet can sign without asking (no password, or unlocked
  with Electrum 4.8's ``load_wallet --unlock``); otherwise it is marked *interrupted* and the
  user is told to resume it (GUI banner, ``joinmarket_schedule_status``).
"""
from __future__ import annotations

import asyncio
import random
from typing import Any, Awaitable, Callable, Optional, Sequence

from electrum_joinmarket.depths.record import DepthRecord
from electrum_joinmarket.logs import get_logger
from electrum_joinmarket.schedule.engine import Engine, StepRequest
from electrum_joinmarket.schedule.model import (
    ADDRASK,
    INTERNAL,
    Schedule,
    ScheduleError,
    ScheduleStatus,
    Step,
    StepStatus,
)
from electrum_joinmarket.schedule.store import ScheduleStore
from electrum_joinmarket.schedule.tumbler import TumblerParams, generate_tumble

__all__ = ["ScheduleService", "Executor"]

log = get_logger(__name__)

Executor = Callable[[StepRequest, Callable[[dict], None], Optional[str]], Awaitable[Any]]


class ScheduleService:
    """``execute(request, progress, password)`` runs one coinjoin attempt (the plugin's Runner
    passes its taker); ``commitments`` is the session's commitment store."""

    def __init__(self, wallet: Any, storage: Any, depths: DepthRecord, commitments: Any,
                 execute: Executor, *, min_counterparties: int = 1, commitment_age: int = 5,
                 poll: float = 5.0, retry_wait: Optional[float] = None):
        self.wallet = wallet
        self.depths = depths
        self.commitments = commitments
        self.store = ScheduleStore(storage, wallet.save_db)
        self._execute = execute
        self.min_counterparties = min_counterparties
        self.commitment_age = commitment_age
        self.poll = poll
        self.retry_wait = retry_wait
        self.task: Optional[asyncio.Task] = None
        self.running_id: Optional[str] = None
        self.engine: Optional[Engine] = None
        self.last_progress: Optional[dict] = None
        self.precheck: Optional[Callable[[], Any]] = None   # e.g. the fee limits must be set
        self._listeners: list[Callable[[dict], None]] = []

    # ------------------------------------------------------------------ listeners (GUI)
    def add_listener(self, fn: Callable[[dict], None]) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[dict], None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def _notify(self, event: dict) -> None:
        for fn in list(self._listeners):
            try:
                fn(event)
            except Exception:
                log.exception("schedule listener failed")

    # ------------------------------------------------------------------ create / edit
    def create(self, *, steps: Optional[Sequence[dict]] = None,
               tumbler: Optional[dict] = None, destinations: Sequence[str] = (),
               name: str = "", max_attempts: int = 3, rng: Optional[random.Random] = None) -> Schedule:
        """A new schedule from explicit ``steps`` (dicts: depth, amount, counterparties,
        destination, wait_blocks, wait_minutes, rounding) or from ``tumbler`` parameters and
        ``destinations``; validated and saved."""
        if (steps is None) == (tumbler is None):
            raise ScheduleError("give either steps or tumbler parameters")
        if steps is not None:
            if not isinstance(steps, (list, tuple)):
                raise ScheduleError("steps must be a list")
            sched = Schedule(steps=[Step.from_dict(dict(s)) for s in steps], name=name)
        else:
            params = TumblerParams.from_dict(tumbler or {})
            balances = self.depths.balances()
            sched = generate_tumble(params, list(destinations), balances,
                                    depth_count=self.depths.count, rng=rng, name=name or "tumble")
        sched.max_attempts = int(max_attempts)
        if self.retry_wait is not None:
            sched.retry_wait = self.retry_wait
        sched.validate(self.depths.count)
        for i, st in enumerate(sched.steps):
            if st.destination not in (INTERNAL, ADDRASK):
                self._check_destination_type(i + 1, st.destination)
        self.store.save(sched)
        self._notify({"schedule": sched.id, "event": "created"})
        return sched

    def set_destination(self, schedule_id: str, step: int, address: str) -> Schedule:
        """Give an ``ADDRASK`` step (1-based ``step``) its address."""
        from electrum.bitcoin import is_address
        sched = self.store.load(schedule_id)
        if not 1 <= step <= len(sched.steps):
            raise ScheduleError(f"step must be 1..{len(sched.steps)}")
        st = sched.steps[step - 1]
        if st.destination != ADDRASK:
            raise ScheduleError(f"step {step} already has a destination ({st.destination})")
        if st.status != StepStatus.PENDING:
            raise ScheduleError(f"step {step} has started; its destination cannot change")
        if not is_address(address):
            raise ScheduleError(f"{address!r} is not an address of this network")
        self._check_destination_type(step, address)
        if self.wallet.is_mine(address):
            raise ScheduleError("that address belongs to this wallet: use INTERNAL for a "
                                "coinjoin to the next depth, or an address of another wallet")
        st.destination_used = address
        if sched.status == ScheduleStatus.NEEDS_ADDRESS:
            sched.message = f"step {step} has its address; resume to continue"
        self.store.save(sched)
        self._notify({"schedule": sched.id, "event": "updated"})
        return sched

    def _check_destination_type(self, step: int, address: str) -> None:
        """A step's coinjoin would refuse an address whose script type differs from the other
        coinjoin outputs (it would single out the output; the runner's script-type check):
        refused here, when the schedule is made, not after its steps failed."""
        from electrum_joinmarket.tx.privacy import (
            TYPE_NAMES,
            coinjoin_output_type,
            destination_type_warning,
        )
        warning = destination_type_warning(address, str(self.wallet.txin_type))
        if warning:
            want = coinjoin_output_type(str(self.wallet.txin_type))
            raise ScheduleError(f"step {step}: {warning}; give a {TYPE_NAMES.get(want, want)} "
                                f"address")

    def delete(self, schedule_id: str) -> None:
        if self.running_id == schedule_id:
            raise ScheduleError("stop the schedule before deleting it")
        self.store.delete(schedule_id)
        self._notify({"schedule": schedule_id, "event": "deleted"})

    # ------------------------------------------------------------------ run
    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    def check_password(self, password: Optional[str]) -> Optional[str]:
        w = self.wallet
        if not w.has_keystore_encryption():
            return None
        if password is None and w.is_unlocked():
            password = w.get_unlocked_password()
        if not password:
            raise ScheduleError("this wallet is password-protected: the schedule needs the "
                                "password to sign its coinjoins")
        try:
            w.check_password(password)
        except Exception:
            raise ScheduleError("wrong wallet password") from None
        return password

    def start(self, schedule_id: str, password: Optional[str] = None) -> dict:
        """Start or resume a schedule as a task on the running loop (call on Electrum's loop).
        Returns its status."""
        if self.busy:
            raise ScheduleError(f"schedule {self.running_id} is running; stop it first")
        sched = self.store.load(schedule_id)
        if sched.status == ScheduleStatus.DONE:
            raise ScheduleError(f"schedule {schedule_id} is done")
        password = self.check_password(password)
        if self.precheck is not None:
            self.precheck()

        async def execute(req: StepRequest, progress: Callable[[dict], None]) -> Any:
            return await self._execute(req, progress, password)

        def on_update(s: Schedule) -> None:
            self._notify({"schedule": s.id, "event": "updated", "status": s.status,
                          "message": s.message})

        def on_progress(ev: dict) -> None:
            self.last_progress = ev
            self._notify(dict(ev, event="progress"))

        self.engine = Engine(wallet=self.wallet, store=self.store, depths=self.depths,
                             commitments=self.commitments, execute=execute,
                             tx_on_network=self.tx_on_network,
                             min_counterparties=self.min_counterparties,
                             commitment_age=self.commitment_age, poll=self.poll,
                             on_update=on_update, on_progress=on_progress)
        self.running_id = schedule_id
        self.task = asyncio.ensure_future(self._run(self.engine, schedule_id))
        return self.store.load(schedule_id).summary()

    async def _run(self, engine: Engine, schedule_id: str) -> Schedule:
        try:
            return await engine.run(schedule_id)
        finally:
            if self.running_id == schedule_id:
                self.running_id = None
            self._notify({"schedule": schedule_id, "event": "finished"})

    async def wait(self, timeout: Optional[float] = None) -> Optional[Schedule]:
        """Wait for the running schedule's task to end (tests, commands with --wait): its
        schedule, None if the task ended cancelled (stopped); ``asyncio.TimeoutError`` after
        ``timeout`` seconds, the task running on. ``asyncio.wait`` neither cancels the task nor
        swallows a cancellation of the caller (a ``CancelledError`` of ours is never mistaken
        for the task's)."""
        task = self.task
        if task is None:
            return None
        done, _ = await asyncio.wait((task,), timeout=timeout)
        if not done:
            raise asyncio.TimeoutError(f"the schedule did not stop within {timeout:g} s")
        return None if task.cancelled() else task.result()

    def stop(self, schedule_id: Optional[str] = None) -> bool:
        """Stop the running schedule (the attempt in flight is cancelled: its coins are
        unfrozen and its commitment stays used). Thread-safe."""
        task = self.task
        if task is None or task.done() or (schedule_id is not None and
                                           schedule_id != self.running_id):
            return False
        if self.engine is not None:
            self.engine.request_stop()
        task.get_loop().call_soon_threadsafe(task.cancel)
        return True

    async def tx_on_network(self, txid: str) -> Optional[bool]:
        """True if the Electrum server knows ``txid`` (mempool or chain), False if it says it
        does not, None if it cannot be asked now."""
        network = getattr(self.wallet, "network", None)
        if network is None or not network.is_connected():
            return None
        from electrum.network import UntrustedServerReturnedError
        try:
            await network.get_transaction(txid, timeout=20)
            return True
        except UntrustedServerReturnedError:
            return False
        except Exception as exc:
            log.info("could not ask the server about %s: %r", txid, exc)
            return None

    # ------------------------------------------------------------------ status
    def status(self, schedule_id: Optional[str] = None) -> Any:
        if schedule_id is not None:
            out = self.store.load(schedule_id).summary()
            out["running"] = self.running_id == schedule_id and self.busy
            if out["running"]:
                out["progress"] = self.last_progress
            return out
        return [dict(s.summary(), running=(self.running_id == s.id and self.busy))
                for s in self.store.all()]

    # ------------------------------------------------------------------ after a restart
    def interrupted(self) -> list[Schedule]:
        """Schedules that were running when Electrum stopped (now that no task runs them)."""
        if self.busy:
            return []
        return [s for s in self.store.all() if s.status == ScheduleStatus.RUNNING]

    def on_wallet_loaded(self) -> Optional[str]:
        """Called when the wallet's session opens: resume an interrupted schedule if the wallet
        can sign without asking (returns its id), otherwise mark it interrupted. Call on
        Electrum's loop."""
        pending = self.interrupted()
        if not pending:
            return None
        sched = pending[-1]
        for other in pending[:-1]:
            other.status = ScheduleStatus.INTERRUPTED
            other.message = "Electrum stopped while this schedule ran; resume it when you want"
            self.store.save(other)
        if self.wallet.is_unlocked():
            log.info("resuming schedule %s after a restart", sched.id)
            try:
                self.start(sched.id, None)
                return sched.id
            except ScheduleError as exc:
                log.info("could not resume schedule %s: %s", sched.id, exc)
        sched.status = ScheduleStatus.INTERRUPTED
        step = sched.current + 1
        sched.message = (f"Electrum stopped while this schedule ran (step {step} of "
                         f"{len(sched.steps)}). Resume it to continue; the wallet password is "
                         f"needed.")
        self.store.save(sched)
        self._notify({"schedule": sched.id, "event": "updated"})
        return None
