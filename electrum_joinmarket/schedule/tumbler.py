"""The tumbler: a schedule generated from a few parameters, following the reference
JoinMarket tumbler's algorithm (joinmarket-clientserver ``get_tumble_schedule``, its defaults
from the tumbler's command line).

1. *Stage 1*: every depth that holds coins is swept, highest depth first, to the next depth
   (INTERNAL), each after a wait drawn from an exponential distribution with mean
   ``timelambda × stage1_timelambda_increase`` minutes.
2. *Stage 2*: starting at the depth after the lowest one that held coins, each of
   ``mixdepthcount`` depths sends ``txcount`` coinjoins (normal(``txcountparams``), at least
   ``mintxcount``) of random fractions of its balance to the next depth; the last one of each
   depth is a sweep.  Fractions are uniform "knife cuts" with the last (the sweep) above 5 %;
   some amounts are rounded to 1–5 significant figures (``rounding_chance``, weights
   ``rounding_sigfig_weights``); counterparties are normal(``makercountrange``), at least
   ``minmakercount``; waits exponential with mean ``timelambda`` minutes.
3. *Destinations*: the last depth sweeps everything to the last of the user's ``addrcount``
   addresses (its other steps are dropped); each of the ``addrcount − 1`` depths before it sends
   its last coinjoin to the address before (earlier depths pay earlier addresses; such a depth
   keeps at least two steps so that some coins move on).  Missing addresses are ``ADDRASK``,
   the last depth's sweep first: the schedule stops before such a step until the user adds one.

Depth numbers wrap modulo the wallet's depth count, as coinjoin outputs do.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Mapping, Optional, Sequence

from electrum_joinmarket.schedule.model import ADDRASK, INTERNAL, NO_ROUNDING, Schedule, ScheduleError, Step

__all__ = ["TumblerParams", "generate_tumble", "amount_fractions"]


@dataclass
class TumblerParams:
    """Ref tumbler defaults (``get_tumbler_parser``)."""
    addrcount: int = 3
    makercountrange: tuple = (9.0, 1.0)
    minmakercount: int = 4
    mixdepthcount: int = 4
    txcountparams: tuple = (2.0, 1.0)
    mintxcount: int = 2
    timelambda: float = 60.0                 # minutes
    stage1_timelambda_increase: float = 3.0
    rounding_chance: float = 0.25
    rounding_sigfig_weights: tuple = (55, 15, 25, 65, 40)
    mixdepthsrc: int = 0
    wait_blocks: int = 0                     # optional extra wait in blocks after every step

    def check(self, depth_count: int) -> None:
        try:
            self._check(depth_count)
        except (TypeError, ValueError, IndexError) as exc:
            if isinstance(exc, ScheduleError):
                raise
            raise ScheduleError(f"tumbler parameters must be numbers (pairs for the ranges): "
                                f"{exc}") from None

    def _check(self, depth_count: int) -> None:
        if not 1 <= self.mixdepthcount <= depth_count - 1:
            raise ScheduleError(f"the tumbler mixes through 1..{depth_count - 1} depths "
                                f"(this wallet has {depth_count})")
        if not 1 <= self.addrcount <= self.mixdepthcount:
            raise ScheduleError("the number of destination addresses must be between 1 and the "
                                "number of depths mixed through")
        if self.minmakercount < 1 or self.mintxcount < 1:
            raise ScheduleError("minimum makers and minimum transactions must be at least 1")
        if not 0 <= self.rounding_chance <= 1:
            raise ScheduleError("rounding chance must be between 0 and 1")
        if len(self.rounding_sigfig_weights) != 5 or min(self.rounding_sigfig_weights) < 0 or \
                sum(self.rounding_sigfig_weights) <= 0:
            raise ScheduleError("rounding weights: five non-negative numbers, not all zero")
        if self.timelambda < 0 or self.stage1_timelambda_increase < 0 or self.wait_blocks < 0:
            raise ScheduleError("waits cannot be negative")

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("makercountrange", "txcountparams", "rounding_sigfig_weights"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "TumblerParams":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ScheduleError(f"unknown tumbler parameter(s): {', '.join(sorted(unknown))}")
        kw = dict(d)
        for k in ("makercountrange", "txcountparams", "rounding_sigfig_weights"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)


def amount_fractions(count: int, rng: random.Random) -> list[float]:
    """``count`` fractions summing to 1 from uniform cuts of [0, 1]; the last one > 0.05 (it is
    a sweep, which later steps' rounding cannot lift)."""
    if count < 1:
        raise ValueError("count must be ≥ 1")
    while True:
        knives = sorted((rng.random() for _ in range(count - 1)), reverse=True)
        out, left = [], 1.0
        for k in knives:
            out.append(left - k)
            left = k
        out.append(left)
        if out[-1] > 0.05:
            return out


def _norm_ints(rng: random.Random, mean: float, sd: float, n: int, low: int) -> list[int]:
    return [max(low, int(rng.gauss(mean, sd))) for _ in range(n)]


def _exp(rng: random.Random, mean: float, n: int) -> list[float]:
    return [round(rng.expovariate(1.0 / mean), 2) if mean > 0 else 0.0 for _ in range(n)]


def _fraction(f: float) -> str:
    d = Decimal(repr(f)).quantize(Decimal("0.000001"))
    d = min(max(d, Decimal("0.000001")), Decimal("0.999999"))
    return format(d.normalize(), "f")


def generate_tumble(params: TumblerParams, destinations: Sequence[str],
                    depth_balances: Mapping[int, int], *, depth_count: int,
                    rng: Optional[random.Random] = None, name: str = "tumble") -> Schedule:
    """A tumble schedule (see module docstring) for a wallet whose depths hold
    ``depth_balances`` (sats)."""
    params.check(depth_count)
    rng = rng or random.SystemRandom()
    dests = [d for d in destinations if d]
    if len(dests) > params.addrcount:
        raise ScheduleError(f"{len(dests)} destination addresses given, the tumbler uses "
                            f"{params.addrcount} (raise the address count)")
    filled = sorted(d % depth_count for d, b in depth_balances.items() if b > 0)
    if not filled:
        raise ScheduleError("the wallet has no confirmed coins to tumble")
    lowest = filled[0]
    mean_n, sd_n = params.makercountrange

    def wrap(d: int) -> int:
        return d % depth_count

    steps: list[dict] = []
    # stage 1: sweep every filled depth to the next one, highest first
    stage1 = sorted(set(filled), reverse=True)
    for depth, wait, n in zip(stage1,
                              _exp(rng, params.timelambda * params.stage1_timelambda_increase,
                                   len(stage1)),
                              _norm_ints(rng, mean_n, sd_n, len(stage1), params.minmakercount),
                              strict=True):
        steps.append(dict(depth=depth, amount=0, counterparties=n, destination=INTERNAL,
                          wait_minutes=wait, rounding=NO_ROUNDING))
    # stage 2: random fractions from each depth to the next; the last of each depth sweeps
    txcounts = _norm_ints(rng, params.txcountparams[0], params.txcountparams[1],
                          params.mixdepthcount, params.mintxcount)
    weights = params.rounding_sigfig_weights
    for m, txcount in enumerate(txcounts):
        if params.mixdepthcount - params.addrcount <= m < params.mixdepthcount - 1:
            txcount = max(txcount, 2)   # sends to a user address: some coins must move on
        depth = wrap(lowest + params.mixdepthsrc + 1 + m)
        fracs = amount_fractions(txcount, rng)
        waits = _exp(rng, params.timelambda, txcount)
        counts = _norm_ints(rng, mean_n, sd_n, txcount, params.minmakercount)
        for i in range(txcount):
            last = i == txcount - 1
            rounding = NO_ROUNDING
            if not last and rng.random() < params.rounding_chance:
                rounding = rng.choices(range(1, 6), weights=weights)[0]
            steps.append(dict(depth=depth, amount=0 if last else _fraction(fracs[i]),
                              counterparties=counts[i], destination=INTERNAL,
                              wait_minutes=waits[i], rounding=rounding))
    # destinations: the last depth sweeps to the last address, the depths before send their last
    # coinjoin to the addresses before it
    external = [ADDRASK] * (params.addrcount - len(dests)) + list(reversed(dests))
    for offset in range(params.addrcount):
        src = wrap(lowest + params.mixdepthsrc + params.mixdepthcount - offset)
        stage2 = [s for s in steps[len(stage1):] if s["depth"] == src]
        if not stage2:
            continue
        stage2[-1]["destination"] = external[offset]
        if offset == 0:
            keep = stage2[-1]
            keep["amount"] = 0
            for s in stage2[:-1]:
                steps.remove(s)
    for s in steps:
        s["wait_blocks"] = params.wait_blocks
    schedule = Schedule(steps=[Step(**s) for s in steps], name=name, params=params.to_dict())
    schedule.validate(depth_count)
    return schedule
