"""The step engine: runs one schedule of one wallet, one coinjoin per step, and survives being
stopped or killed at any point.

State machine of a step (saved in the wallet file at every arrow)::

    pending --attempt--> running --broadcast--> broadcast --1 confirmation--> done
       ^                    |
       +--- failed/stopped -+   (attempts < max_attempts: wait retry_wait, new makers;
                                 otherwise the schedule is "failed", nothing of the step spent)

Before a step starts: its wait after the previous step (``not_before_height``/``_time``), a
destination (``ADDRASK`` stops the schedule until the user adds one), and coins of its depth that
are all confirmed, one of them old enough to back a PoDLE commitment.

Restart invariants (TESTING.md F7):

* **No double spend, no repeated step**: every transaction an attempt builds is appended to
  ``pending_txids`` and saved *before* it is sent to makers (the taker reports it with the
  ``built`` progress event, synchronously).  A step found ``running`` after a restart, and
  every failed attempt, is first checked against the wallet and the server: if one of its
  transactions reached the network the step is ``broadcast`` (never run again); only if none
  did is it retried — spending the same coins, so at most one of the transactions can ever
  confirm.  While the server cannot be asked, nothing is retried.
* **No reused commitment**: commitments are recorded as used in the wallet file before they
  are sent (taker invariant 2), so a retried attempt always uses a new one; the step lists them.
* **No lost record**: schedule, steps and the depth record live in the wallet file and are
  saved at every transition.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Awaitable, Callable, Optional

from electrum_joinmarket.depths.record import DepthError, DepthRecord
from electrum_joinmarket.depths.rules import next_depth
from electrum_joinmarket.logs import get_logger
from electrum_joinmarket.schedule.model import (
    ADDRASK,
    INTERNAL,
    NO_ROUNDING,
    Schedule,
    ScheduleError,
    ScheduleStatus,
    Step,
    StepStatus,
)
from electrum_joinmarket.schedule.store import ScheduleStore
from electrum_joinmarket.stages import OutcomeStatus, TakerStage
from jmcore.aio import wait_for

__all__ = ["BUILT_STAGE", "StepRequest", "Engine", "round_sigfig"]

log = get_logger(__name__)

_WAKE_EVENTS = ("blockchain_updated", "adb_added_tx", "adb_added_verified_tx",
                "adb_removed_tx", "adb_set_up_to_date")
"""Electrum's callbacks after which a wait of the engine checks again at once (the waits also
check every ``poll`` seconds)."""

BUILT_STAGE = TakerStage.BUILT   # taker progress: the transaction exists, !tx not sent yet


def round_sigfig(value: int, sigfig: int) -> int:
    """``value`` rounded to ``sigfig`` significant figures (Ref ``round_to_significant_figures``)."""
    if value <= 0 or sigfig >= NO_ROUNDING:
        return value
    digits = len(str(value))
    if sigfig >= digits:
        return value
    q = 10 ** (digits - sigfig)
    return int((Decimal(value) / q).quantize(Decimal(1)) * q)


@dataclass
class StepRequest:
    """One coinjoin attempt, as the executor receives it."""
    schedule_id: str
    index: int
    attempt: int
    depth: int
    amount: int                  # sats; 0 = sweep the depth
    destination: str
    counterparties: int
    coins: list                  # outpoints of the depth the taker may spend
    ignored_makers: dict = field(default_factory=dict)


class _Stop(Exception):
    """The run ends here (stopped, failed, needs an address); the schedule is saved."""


class Engine:
    """Runs schedules of one wallet. ``execute(request, progress)`` does one coinjoin and
    returns an outcome with ``status`` ("success"/"failed"/"cancelled"), ``message``, ``txid``,
    ``cj_amount``, ``total_cost``, ``ignored_makers``.  ``tx_on_network(txid)`` answers True /
    False / None (cannot tell now).  ``commitments`` is the wallet's commitment store."""

    def __init__(self, *, wallet: Any, store: ScheduleStore, depths: DepthRecord,
                 commitments: Any,
                 execute: Callable[[StepRequest, Callable[[dict], None]], Awaitable[Any]],
                 tx_on_network: Callable[[str], Awaitable[Optional[bool]]],
                 min_counterparties: int = 1, commitment_age: int = 5,
                 poll: float = 5.0, on_update: Optional[Callable[[Schedule], None]] = None,
                 on_progress: Optional[Callable[[dict], None]] = None,
                 clock: Callable[[], float] = time.time):
        self.wallet = wallet
        self.store = store
        self.depths = depths
        self.commitments = commitments
        self.execute = execute
        self.tx_on_network = tx_on_network
        self.min_counterparties = max(1, int(min_counterparties))
        self.commitment_age = int(commitment_age)
        self.poll = poll
        self.on_update = on_update
        self.on_progress = on_progress
        self.clock = clock
        self._stop_requested = False
        self._wake: Optional[asyncio.Event] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    # ------------------------------------------------------------------ helpers
    def _save(self, sched: Schedule, message: Optional[str] = None) -> None:
        if message is not None:
            sched.message = message
        self.store.save(sched)
        if self.on_update is not None:
            try:
                self.on_update(sched)
            except Exception:
                log.exception("schedule update callback failed")

    def _height(self) -> int:
        return int(self.wallet.adb.get_local_height())

    def request_stop(self) -> None:
        self._stop_requested = True
        self._on_chain_event()                  # a wait in progress sees it now

    # ------------------------------------------------------------------ waking on the chain
    def _on_chain_event(self, *args: Any) -> None:
        """Electrum's callback (a new header, a wallet transaction added or verified, a wallet
        synced): wake the current wait so it checks again now. The ``adb_*`` events of other
        wallets (their first argument) are ignored. Any thread."""
        if args and args[0] is not getattr(self.wallet, "adb", None):
            return
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    def _listen(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            from electrum import util
            util.register_callback(self._on_chain_event, _WAKE_EVENTS)
        except Exception:                       # no Electrum callbacks: the waits poll
            log.debug("schedule engine: no Electrum callbacks; polling", exc_info=True)

    def _unlisten(self) -> None:
        try:
            from electrum import util
            util.unregister_callback(self._on_chain_event)
        except Exception:
            pass
        self._wake = None

    async def _nap(self, seconds: float) -> None:
        """Wait before checking again: ``seconds`` at most, less when Electrum reports a new
        block or a wallet transaction change (the checks after the nap see that state: the
        event is cleared before they run). A burst of events is taken as one (0.1 s)."""
        wake = self._wake
        if wake is None:
            await asyncio.sleep(seconds)
            return
        try:
            await wait_for(wake.wait(), seconds)
        except asyncio.TimeoutError:
            return
        await asyncio.sleep(min(0.1, seconds))
        wake.clear()

    # ------------------------------------------------------------------ the run
    async def run(self, schedule_id: str) -> Schedule:
        """Run (or resume) the schedule until it is done, stopped, failed or needs an address.
        Cancelling the task stops it cleanly (state ``stopped``)."""
        sched = self.store.load(schedule_id)
        sched.validate(self.depths.count)
        if sched.status == ScheduleStatus.DONE:
            return sched
        self._stop_requested = False
        resumed = sched.status != ScheduleStatus.NEW
        sched.status = ScheduleStatus.RUNNING
        self._save(sched, "resuming" if resumed else "starting")
        self._listen()
        try:
            await self._wait_synced()        # after a restart: the wallet's coins first
            while sched.current < len(sched.steps):
                step = sched.steps[sched.current]
                if step.status == StepStatus.RUNNING:
                    await self._recover(sched, step)
                if step.status == StepStatus.BROADCAST:
                    await self._wait_confirmed(sched, step)
                    continue
                if step.status == StepStatus.DONE:       # saved done, current not moved yet
                    self._advance(sched, step)
                    continue
                if not await self._wait_ready(sched, step):
                    raise _Stop()
                await self._attempt_until_broadcast(sched, step)
            sched.status = ScheduleStatus.DONE
            self._save(sched, f"done: {len(sched.steps)} coinjoin(s)")
        except _Stop:
            pass
        except (ScheduleError, DepthError) as exc:
            sched.status = ScheduleStatus.FAILED
            self._save(sched, f"step {sched.current + 1}: {exc}. Nothing was lost; fix it and "
                              f"resume")
        except asyncio.CancelledError:
            self._stopped(sched)
            raise
        except Exception as exc:       # a bug or a wallet error: stop, keep everything
            log.exception("schedule %s stopped by an error", sched.id)
            sched.status = ScheduleStatus.FAILED
            self._save(sched, f"stopped by an internal error: {exc!r}. Nothing was lost; "
                              f"resume to continue")
        finally:
            self._unlisten()
        return sched

    def _stopped(self, sched: Schedule) -> None:
        # a step left "running" is checked by _recover on resume (was it broadcast?)
        sched.status = ScheduleStatus.STOPPED
        self._save(sched, "stopped by the user; resume continues where it stopped")

    # ------------------------------------------------------------------ recovery
    async def _broadcast_of(self, step: Step) -> Optional[dict]:
        """The pending transaction of ``step`` that reached the network, if any. Waits while
        the server cannot be asked (never guesses "not broadcast")."""
        while True:
            unknown = False
            for p in step.pending_txids:
                txid = p.get("txid")
                if not txid:
                    continue
                if self._in_wallet(txid):
                    return p
                known = await self.tx_on_network(txid)
                if known:
                    return p
                if known is None:
                    unknown = True
            if not unknown:
                return None
            await self._nap(self.poll)

    def _in_wallet(self, txid: str) -> bool:
        adb = self.wallet.adb
        if adb.get_transaction(txid) is None:
            return False
        from electrum.address_synchronizer import TX_HEIGHT_LOCAL
        return adb.get_tx_height(txid).height() != TX_HEIGHT_LOCAL

    async def _recover(self, sched: Schedule, step: Step) -> None:
        """A step was ``running`` when Electrum stopped: find out whether its transaction went
        out before deciding anything."""
        self._save(sched, f"step {sched.current + 1}: checking whether the interrupted "
                          f"attempt reached the network")
        await self._wait_synced()
        found = await self._broadcast_of(step)
        if found is not None:
            self._mark_broadcast(sched, step, found["txid"], found.get("cj_amount"), None)
            return
        step.status = StepStatus.PENDING
        step.error = (f"attempt {step.attempts} was interrupted before its transaction reached "
                      f"the network; trying again")
        self._save(sched, f"step {sched.current + 1}: {step.error}")

    async def _wait_synced(self) -> None:
        while not self.wallet.is_up_to_date():
            await self._nap(min(self.poll, 1.0))

    # ------------------------------------------------------------------ waiting
    async def _wait_ready(self, sched: Schedule, step: Step) -> bool:
        """Wait until the step may start; False if the schedule must stop (needs an address)."""
        last = None
        while True:
            if step.destination == ADDRASK and not step.destination_used:
                sched.status = ScheduleStatus.NEEDS_ADDRESS
                self._save(sched, f"step {sched.current + 1} needs a destination address: add "
                                  f"one, then resume")
                return False
            waiting = []
            if sched.not_before_height and self._height() < sched.not_before_height:
                waiting.append(f"block {sched.not_before_height} (now {self._height()})")
            if sched.not_before_time and self.clock() < sched.not_before_time:
                waiting.append(time.strftime("%H:%M:%S", time.localtime(sched.not_before_time)))
            coins = [c for c in self.depths.coins(step.depth) if not c.frozen]
            unconfirmed = [c for c in coins if not c.confirmed]
            confirmed = [c for c in coins if c.confirmed]
            if unconfirmed:
                waiting.append(f"{len(unconfirmed)} coin(s) of depth {step.depth} to confirm")
            elif not confirmed:
                raise ScheduleError(f"depth {step.depth} has no coins for step "
                                    f"{sched.current + 1}")
            else:
                tip = self._height()
                best = max(tip - c.height + 1 for c in confirmed)
                if best < self.commitment_age:
                    waiting.append(f"a coin of depth {step.depth} with {self.commitment_age} "
                                   f"confirmations for the PoDLE commitment (now {best})")
            if not waiting:
                return True
            msg = f"step {sched.current + 1}: waiting for " + "; ".join(waiting)
            if msg != last:
                self._save(sched, msg)
                last = msg
            if self._stop_requested:
                raise asyncio.CancelledError()
            await self._nap(self.poll)

    async def _wait_confirmed(self, sched: Schedule, step: Step) -> None:
        """Wait for the broadcast step's transaction to confirm, then advance. A stop request
        ends the wait (within ``poll``) even if the task's cancellation was lost: the step
        stays ``broadcast`` (saved) and a resumed run waits for it again."""
        msg = f"step {sched.current + 1}: waiting for {step.txid} to confirm"
        self._save(sched, msg)
        while True:
            info = self.wallet.adb.get_tx_height(step.txid)
            if self.wallet.adb.get_transaction(step.txid) is not None and info.conf >= 1:
                step.status = StepStatus.DONE
                step.confirmed_height = info.height()
                step.done_at = self.clock()
                self._advance(sched, step)
                return
            if self._stop_requested:
                raise asyncio.CancelledError()
            await self._nap(self.poll)

    def _advance(self, sched: Schedule, step: Step) -> None:
        sched.current += 1
        height = step.confirmed_height or self._height()
        sched.not_before_height = height + step.wait_blocks if step.wait_blocks else None
        sched.not_before_time = (self.clock() + step.wait_minutes * 60
                                 if step.wait_minutes else None)
        self._save(sched, f"step {sched.current} done ({step.txid})")

    # ------------------------------------------------------------------ attempts
    def _amount(self, sched: Schedule, step: Step) -> int:
        if step.is_sweep:
            return 0
        if not step.is_fraction:
            return int(step.amount)
        i = sched.current
        while i > 0 and sched.steps[i - 1].depth == step.depth:
            i -= 1
        key = str(i)
        if key not in sched.snapshots:    # Ref: the depth's balance when its run of steps begins
            sched.snapshots[key] = self.depths.balances()[step.depth]
            self._save(sched)
        amount = int((Decimal(step.amount) * sched.snapshots[key]).to_integral_value(ROUND_FLOOR))
        amount = round_sigfig(amount, step.rounding)
        return max(amount, sched.mincjamount)

    def _destination(self, sched: Schedule, step: Step) -> str:
        if step.destination == INTERNAL:
            addr = self.depths.reserve_address(next_depth(step.depth, self.depths.count))
            step.addresses = list(step.addresses) + [addr]
            return addr
        if step.destination == ADDRASK:
            if not step.destination_used:
                raise ScheduleError("no destination address")
            return step.destination_used
        return step.destination

    async def _attempt_until_broadcast(self, sched: Schedule, step: Step) -> None:
        tries = 0
        while True:
            if self._stop_requested:
                raise asyncio.CancelledError()
            tries += 1
            await self._attempt(sched, step)
            if step.status == StepStatus.BROADCAST:
                return
            if tries >= sched.max_attempts:
                sched.status = ScheduleStatus.FAILED
                self._save(sched, f"step {sched.current + 1} failed {tries} time(s): "
                                  f"{step.error}. Nothing of this step was spent: its coins are "
                                  f"still in depth {step.depth}. Resume to try again.")
                raise _Stop()
            if step.is_sweep and step.counterparties > self.min_counterparties:
                step.counterparties -= 1      # Ref tweak: sweeps retry with one maker fewer
            self._save(sched, f"step {sched.current + 1}: attempt {step.attempts} failed "
                              f"({step.error}); trying again with other makers in "
                              f"{sched.retry_wait:g} s")
            await asyncio.sleep(sched.retry_wait)

    async def _attempt(self, sched: Schedule, step: Step) -> Any:
        await self._wait_synced()
        amount = self._amount(sched, step)
        coins = self.depths.spendable_outpoints(step.depth)
        destination = self._destination(sched, step)
        step.attempts += 1
        step.status = StepStatus.RUNNING
        step.started_at = self.clock()
        step.error = None
        step.inputs = []
        step.destination_used = destination if step.destination != ADDRASK else step.destination_used
        before = set(self.commitments.used())
        self._save(sched, f"step {sched.current + 1}: coinjoin attempt {step.attempts} "
                          f"({'sweep' if amount == 0 else f'{amount} sat'} from depth "
                          f"{step.depth})")

        def record_commitments() -> None:
            new = sorted(set(self.commitments.used()) - before - set(step.commitments))
            if new:
                step.commitments = list(step.commitments) + new

        def progress(event: dict) -> None:
            if event.get("stage") == BUILT_STAGE and event.get("txid"):
                # durable before the transaction leaves the process (module invariant)
                step.pending_txids = list(step.pending_txids) + [
                    {"txid": event["txid"], "cj_amount": event.get("cj_amount"),
                     "attempt": step.attempts, "inputs": list(event.get("inputs") or [])}]
                step.inputs = list(event.get("inputs") or [])
                record_commitments()
                self._save(sched)
            if self.on_progress is not None:
                self.on_progress(dict(event, schedule=sched.id, step=sched.current))

        request = StepRequest(sched.id, sched.current, step.attempts, step.depth, amount,
                              destination, step.counterparties, coins,
                              dict(step.ignored_makers))
        try:
            outcome = await self.execute(request, progress)
        except asyncio.CancelledError:
            # the step stays "running": on resume _recover checks whether it went out
            record_commitments()
            self._save(sched)
            raise
        except Exception as exc:
            log.info("schedule %s step %d attempt failed: %r", sched.id, sched.current, exc)
            outcome = _Failed(str(exc) or type(exc).__name__)
        record_commitments()
        status = getattr(outcome, "status", OutcomeStatus.FAILED)
        if status == OutcomeStatus.CANCELLED:
            # stopped by the user: the step stays "running", _recover checks it on resume
            self._save(sched)
            raise asyncio.CancelledError()
        if status == OutcomeStatus.SUCCESS and getattr(outcome, "txid", None):
            self._mark_broadcast(sched, step, outcome.txid, getattr(outcome, "cj_amount", None),
                                 getattr(outcome, "total_cost", None))
            return outcome
        # not a success: did one of its transactions go out anyway (e.g. cancelled after
        # broadcast)? then the step is broadcast, never run again
        found = await self._broadcast_of(step)
        if found is not None:
            self._mark_broadcast(sched, step, found["txid"], found.get("cj_amount"), None)
            return outcome
        step.status = StepStatus.PENDING
        step.ignored_makers = dict(step.ignored_makers, **(getattr(outcome, "ignored_makers",
                                                                   None) or {}))
        step.error = getattr(outcome, "message", None) or status
        self._save(sched)
        return outcome

    def _mark_broadcast(self, sched: Schedule, step: Step, txid: str,
                        cj_amount: Optional[int], total_cost: Optional[int]) -> None:
        step.txid = txid
        step.status = StepStatus.BROADCAST
        step.broadcast_at = self.clock()
        step.error = None
        if cj_amount:
            step.cj_amount = int(cj_amount)
            self.depths.note_coinjoin(txid, int(cj_amount))
        if total_cost is not None:
            step.total_cost = int(total_cost)
        self._save(sched, f"step {sched.current + 1}: coinjoin {txid} broadcast")


@dataclass
class _Failed:
    message: str
    status: str = OutcomeStatus.FAILED
    txid: Optional[str] = None
    ignored_makers: dict = field(default_factory=dict)
