"""Flow limits of the daemon against floods from the network (issue 12 H3, H4; TESTING.md D8-D10).

A *source* is the connection a message arrived on: a directory connection, a direct onion peer
link or an IRC server connection (all Twisted ``LineReceiver`` protocols, so they can be paused).
Limits are kept per source and in total, never per nick — nicks cost nothing.

* :class:`TokenBucket` — at most ``rate`` events per second on average, ``burst`` at once;
* :class:`Backpressure` — counts work a source has queued with the client (signature checks) and
  pauses reading from it while it has too much outstanding, instead of dropping queued work; the
  source is resumed once its queue has drained to half.

The daemon's own size and memory bounds are here too (docs/protocol.md §2, §3.1, §13); every
wire constant is :mod:`jmcore.constants`'s. They are read as ``limits.NAME`` at use, so a test
may lower them.
"""
from __future__ import annotations

import logging
import time
import weakref
from typing import Any, Callable

log = logging.getLogger(__name__)

MAX_ONION_LINE = 65536
"""Bytes per onion JSON line we accept (joinmarket-ng's directory limit)."""
MAX_MESSAGE_LEN = 65536
"""Bytes of one reassembled JoinMarket message (IRC chunks)."""
MAX_SEEN_PER_DIRECTORY = 50000
"""Nicks remembered as reachable through one directory."""
MAX_TRACKED_NICKS = 50000
"""Nicks remembered per channel by the message layer."""


class TokenBucket:
    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.clock = clock
        self.stamp = clock()

    def allow(self, cost: float = 1.0) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class PerSource:
    """One value per source (weakly keyed, so a closed connection's entry goes with it); the
    ``None`` source (messages of unit tests without a connection) is one ordinary key."""

    def __init__(self, factory: Callable[[], Any]):
        self.factory = factory
        self._weak: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._none: Any = None

    def get(self, source: Any) -> Any:
        if source is None:
            if self._none is None:
                self._none = self.factory()
            return self._none
        try:
            value = self._weak.get(source)
        except TypeError:                  # not weak-referenceable: share the None slot
            return self.get(None)
        if value is None:
            value = self._weak[source] = self.factory()
        return value


class Backpressure:
    """Outstanding client work per source, with reading paused above ``per_source`` (or when the
    total reaches ``total``) and resumed below half of it.

    Invariant: nothing already queued is ever dropped to make room; a flood only slows down the
    connection it comes from (and, past ``total``, every connection that adds to the queue).
    """

    def __init__(self, per_source: int = 200, total: int = 2000,
                 schedule: Callable[[Callable[[], None]], Any] | None = None):
        self.per_source = per_source
        self.total = total
        self.outstanding = 0
        self._count = PerSource(lambda: [0])
        self._paused: dict[int, Any] = {}
        self._schedule = schedule
        self.pauses = 0

    def count(self, source: Any) -> int:
        return self._count.get(source)[0]

    def add(self, source: Any) -> None:
        self._count.get(source)[0] += 1
        self.outstanding += 1
        if self.count(source) >= self.per_source or self.outstanding >= self.total:
            self._pause(source)

    def done(self, source: Any) -> None:
        slot = self._count.get(source)
        if slot[0] > 0:
            slot[0] -= 1
            self.outstanding -= 1
        if self._paused and self.outstanding < self.total // 2:
            for key, src in list(self._paused.items()):
                if self.count(src) <= self.per_source // 2:
                    del self._paused[key]
                    self._resume(src)

    def _pause(self, source: Any) -> None:
        if source is None or id(source) in self._paused:
            return
        pause = getattr(source, "pauseProducing", None)
        if pause is None:
            return
        self._paused[id(source)] = source
        self.pauses += 1
        log.info("pausing a flooding connection (%d messages of it awaiting the client, %d in "
                 "all)", self.count(source), self.outstanding)
        pause()

    def _resume(self, source: Any) -> None:
        def go() -> None:
            resume = getattr(source, "resumeProducing", None)
            if resume is not None and getattr(source, "transport", None) is not None:
                resume()
        if self._schedule is not None:
            self._schedule(go)
        else:
            go()

    @property
    def paused(self) -> int:
        return len(self._paused)


class FairQueue:
    """Work waiting for the client (signature checks), served fairly (H4, D9).

    Items are grouped in *classes* (a sender nick and a command). At most ``per_class`` items
    wait in a class: a new one pushes out the oldest waiting one of the same class (legitimate
    traffic never has that many of one nick and command waiting, so only a flood under one name
    loses anything, and then its oldest). At most ``in_flight`` items are with the client at
    once; the next one comes from the class after the last served one (round robin), and within
    a class the newest first — so a flood under one name never delays another sender, and an
    honest message that arrives after a burst of forgeries under its sender's name is checked
    next instead of after all of them.
    """

    def __init__(self, send: Callable[[Any], None], per_class: int = 32, in_flight: int = 100,
                 on_drop: Callable[[Any], None] | None = None):
        from collections import OrderedDict, deque
        self._deque = deque
        self.send = send
        self.per_class = per_class
        self.in_flight_max = in_flight
        self.in_flight = 0
        self.on_drop = on_drop
        self.classes: OrderedDict[Any, Any] = OrderedDict()
        self.waiting = 0
        self.dropped = 0

    def add(self, cls: Any, item: Any) -> None:
        dq = self.classes.get(cls)
        if dq is None:
            dq = self.classes[cls] = self._deque()
        if len(dq) >= self.per_class:
            old = dq.popleft()
            self.waiting -= 1
            self.dropped += 1
            if self.dropped in (1, 100, 10000, 1000000):
                log.info("more than %d messages of one nick and command waiting for a signature "
                         "check: the oldest dropped (%d so far)", self.per_class, self.dropped)
            if self.on_drop is not None:
                self.on_drop(old)
        dq.append(item)
        self.waiting += 1
        self.pump()

    def done(self) -> None:
        if self.in_flight > 0:
            self.in_flight -= 1
        self.pump()

    def pump(self) -> None:
        while self.in_flight < self.in_flight_max and self.classes:
            cls, dq = next(iter(self.classes.items()))
            item = dq.pop()
            self.waiting -= 1
            if dq:
                self.classes.move_to_end(cls)
            else:
                del self.classes[cls]
            self.in_flight += 1
            self.send(item)
