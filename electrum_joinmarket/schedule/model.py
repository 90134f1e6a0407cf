"""Schedules: lists of coinjoin steps run one after another (JoinMarket's "Multiple join" and
tumbler), stored in the wallet file.

A :class:`Step` says *what* to do — spend from ``depth`` an ``amount`` (sats, a fraction of the
depth's balance, or 0 = sweep) in a coinjoin with ``counterparties`` makers, to ``destination``
(an address, ``INTERNAL`` = a fresh address of the next depth, or ``ADDRASK`` = an address the
user adds later), then wait ``wait_blocks`` blocks / ``wait_minutes`` minutes before the next
step — and keeps *what happened*: status, attempts, the transaction(s) built, the error.

Invariants (checked by :meth:`Step.validate` / :meth:`Schedule.validate` on every load):

* amounts are exact: sats are ints, fractions are decimal strings in (0, 1) (no float in the
  record); 0 means sweep;
* ``txid`` is set only once a step's coinjoin was broadcast; ``pending_txids`` lists every
  transaction a step built and sent to makers (``!tx``) — saved before any signature of ours
  leaves the process — so a restart can find out whether one of them made it to the network;
* a schedule's ``current`` index only moves forward, after the step's transaction confirmed.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal, InvalidOperation
from typing import Any, Optional, Union

from electrum_joinmarket.errors import UserError

__all__ = ["INTERNAL", "ADDRASK", "NO_ROUNDING", "StepStatus", "ScheduleStatus", "ScheduleError",
           "Step", "Schedule", "parse_amount"]

INTERNAL = "INTERNAL"
ADDRASK = "ADDRASK"
NO_ROUNDING = 16          # Ref: significant figures = no rounding at satoshi precision


class StepStatus:
    PENDING = "pending"        # not started (or to be retried)
    RUNNING = "running"        # a coinjoin attempt is in progress
    BROADCAST = "broadcast"    # its transaction was broadcast; waiting for a confirmation
    DONE = "done"              # confirmed
    ALL = (PENDING, RUNNING, BROADCAST, DONE)


class ScheduleStatus:
    NEW = "new"                # created, never started
    RUNNING = "running"        # a step runs or the schedule waits for the next one
    STOPPED = "stopped"        # the user stopped it; resume continues where it stopped
    INTERRUPTED = "interrupted"  # Electrum stopped while it ran; resume continues
    NEEDS_ADDRESS = "needs-address"  # the next step's destination is ADDRASK: add an address
    FAILED = "failed"          # a step kept failing; nothing of that step was spent
    DONE = "done"
    ACTIVE = (RUNNING,)
    RESUMABLE = (NEW, STOPPED, INTERRUPTED, NEEDS_ADDRESS, FAILED)
    ALL = (NEW, RUNNING, STOPPED, INTERRUPTED, NEEDS_ADDRESS, FAILED, DONE)


class ScheduleError(UserError):
    """A schedule or step the user wrote is not valid, or cannot run as it is; the message says
    what to fix."""


def parse_amount(value: Any) -> Union[int, str]:
    """An amount as the record keeps it: int sats (0 = sweep) or a fraction string in (0, 1).

    Ints and integral strings are sats; a decimal string or number with a point is a fraction of
    the depth's balance ("0.25").  Floats are accepted from JSON but stored as their shortest
    decimal string."""
    if isinstance(value, bool):
        raise ScheduleError("an amount is sats (whole number), a fraction like 0.25, or 0 (sweep)")
    if isinstance(value, int):
        if value < 0:
            raise ScheduleError("an amount cannot be negative")
        return value
    text = repr(value) if isinstance(value, float) else str(value).strip()
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise ScheduleError(f"amount {value!r} is not a number") from None
    if not d.is_finite() or d < 0:
        raise ScheduleError(f"amount {value!r} must be a non-negative number")
    if "." not in text and "e" not in text.lower():
        return int(d)
    if d == 0:
        return 0
    if not d < 1:
        raise ScheduleError(f"amount {value!r}: a fraction must be between 0 and 1 "
                            f"(write sats as a whole number)")
    return format(d.normalize(), "f")


@dataclass
class Step:
    depth: int
    amount: Union[int, str]
    counterparties: int
    destination: str
    wait_blocks: int = 0
    wait_minutes: float = 0.0
    rounding: int = NO_ROUNDING
    # -- what happened
    status: str = StepStatus.PENDING
    attempts: int = 0
    txid: Optional[str] = None
    cj_amount: Optional[int] = None
    total_cost: Optional[int] = None
    pending_txids: list = field(default_factory=list)
    inputs: list = field(default_factory=list)         # outpoints of the current attempt
    addresses: list = field(default_factory=list)      # INTERNAL addresses reserved so far
    destination_used: Optional[str] = None
    commitments: list = field(default_factory=list)    # PoDLE commitments of its attempts
    ignored_makers: dict = field(default_factory=dict)
    error: Optional[str] = None
    started_at: Optional[float] = None
    broadcast_at: Optional[float] = None
    confirmed_height: Optional[int] = None
    done_at: Optional[float] = None

    @property
    def is_sweep(self) -> bool:
        return self.amount == 0

    @property
    def is_fraction(self) -> bool:
        return isinstance(self.amount, str)

    def validate(self, depth_count: int) -> None:
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or \
                not 0 <= self.depth < depth_count:
            raise ScheduleError(f"depth must be 0..{depth_count - 1}, not {self.depth!r}")
        self.amount = parse_amount(self.amount)
        if isinstance(self.counterparties, bool) or not isinstance(self.counterparties, int) or \
                not 1 <= self.counterparties <= 20:
            raise ScheduleError("counterparties must be a whole number from 1 to 20")
        if not isinstance(self.destination, str) or not self.destination:
            raise ScheduleError("a destination is an address, INTERNAL or ADDRASK")
        if self.destination not in (INTERNAL, ADDRASK):
            from electrum.bitcoin import is_address
            if not is_address(self.destination):
                raise ScheduleError(f"{self.destination!r} is not an address of this network "
                                    f"(nor INTERNAL or ADDRASK)")
        if isinstance(self.wait_blocks, bool) or not isinstance(self.wait_blocks, int) or \
                self.wait_blocks < 0:
            raise ScheduleError("wait_blocks must be a whole number ≥ 0")
        try:
            self.wait_minutes = float(self.wait_minutes)
        except (TypeError, ValueError):
            raise ScheduleError("wait_minutes must be a number") from None
        if not 0 <= self.wait_minutes <= 60 * 24 * 30:
            raise ScheduleError("wait_minutes must be between 0 and 43200 (30 days)")
        if not isinstance(self.rounding, int) or not 1 <= self.rounding <= NO_ROUNDING:
            raise ScheduleError(f"rounding must be 1..{NO_ROUNDING} significant figures")
        if self.status not in StepStatus.ALL:
            raise ScheduleError(f"unknown step status {self.status!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Step":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ScheduleError(f"unknown step field(s): {', '.join(sorted(unknown))}")
        plain: dict[str, Any] = {k: (list(v) if isinstance(v, (list, tuple)) else
                                     dict(v) if isinstance(v, dict) else v) for k, v in d.items()}
        try:
            step = cls(**plain)
        except TypeError as exc:
            raise ScheduleError(f"a step needs depth, amount, counterparties and destination "
                                f"({exc})") from None
        return step

    def describe(self) -> str:
        if self.is_sweep:
            amt = "everything"
        elif self.is_fraction:
            amt = f"{Decimal(self.amount) * 100:.4g}% of the depth's balance"
        else:
            amt = f"{self.amount} sat"
        dest = {INTERNAL: "the next depth", ADDRASK: "an address you add later"}.get(
            self.destination, self.destination)
        wait = []
        if self.wait_blocks:
            wait.append(f"{self.wait_blocks} block(s)")
        if self.wait_minutes:
            wait.append(f"{self.wait_minutes:g} min")
        return (f"from depth {self.depth} send {amt} to {dest} with {self.counterparties} "
                f"makers" + (f", then wait {' and '.join(wait)}" if wait else ""))


@dataclass
class Schedule:
    steps: list
    id: str = field(default_factory=lambda: secrets.token_hex(4))
    name: str = ""
    status: str = ScheduleStatus.NEW
    current: int = 0
    message: str = ""
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    max_attempts: int = 3
    retry_wait: float = 60.0
    mincjamount: int = 100_000
    snapshots: dict = field(default_factory=dict)    # str(first step of a depth run) -> balance
    not_before_height: Optional[int] = None
    not_before_time: Optional[float] = None
    params: Optional[dict] = None                     # generator parameters, if generated

    def validate(self, depth_count: int) -> None:
        if not self.steps:
            raise ScheduleError("a schedule needs at least one step")
        if len(self.steps) > 200:
            raise ScheduleError("at most 200 steps")
        for i, s in enumerate(self.steps):
            try:
                s.validate(depth_count)
            except ScheduleError as exc:
                raise ScheduleError(f"step {i + 1}: {exc}") from None
        if self.status not in ScheduleStatus.ALL:
            raise ScheduleError(f"unknown schedule status {self.status!r}")
        if not 0 <= self.current <= len(self.steps):
            raise ScheduleError("current step out of range")
        if not 1 <= int(self.max_attempts) <= 20:
            raise ScheduleError("max_attempts must be 1..20")

    @property
    def step(self) -> Optional[Step]:
        return self.steps[self.current] if self.current < len(self.steps) else None

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["steps"] = [s.to_dict() for s in self.steps]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Schedule":
        d = dict(d)
        steps = [s if isinstance(s, Step) else Step.from_dict(dict(s)) for s in d.pop("steps", [])]
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ScheduleError(f"unknown schedule field(s): {', '.join(sorted(unknown))}")
        for k in ("snapshots", "params"):
            if isinstance(d.get(k), dict):
                d[k] = dict(d[k])
        return cls(steps=steps, **d)

    def summary(self) -> dict:
        """JSON-able, for the status command and the GUI."""
        done = sum(1 for s in self.steps if s.status == StepStatus.DONE)
        return {"id": self.id, "name": self.name, "status": self.status,
                "message": self.message, "current": self.current, "steps_done": done,
                "steps_total": len(self.steps), "created": self.created,
                "updated": self.updated,
                "not_before_height": self.not_before_height,
                "not_before_time": self.not_before_time,
                "steps": [dict(s.to_dict(), description=s.describe()) for s in self.steps]}
