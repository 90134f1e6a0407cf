"""The taker's orderbook stage ends on events: once offers from ``n_makers`` makers are in and
the book was unchanged for the quiet period (after the minimum wait), else at the maximum wait.
Against a daemon that pushes the book (our EJMFollowOffers extension) it never asks; against one
that speaks only the reference AMP command set it asks JMRequestOffers every ``orderbook_poll``.
The daemons here are minimal AMP servers speaking exactly those command sets (no reference
joinmarketd runs in this environment); the real daemon's pushes are tested in
tests/daemon/test_offers_push.py and every e2e coinjoin."""
from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import pytest

from electrum_joinmarket.link.client import DaemonClient
from electrum_joinmarket.market.limits import FeeLimits
from electrum_joinmarket.protocol.commitments import CommitmentStore
from electrum_joinmarket.taker.taker import Taker, TakerConfig
from jmcore import amp as jamp
from jmcore.commands import ALL_COMMANDS, COMMANDS


def _offer(nick: str, oid: int = 0, cjfee: str = "0.0002") -> dict:
    return {"counterparty": nick, "oid": oid, "ordertype": "sw0reloffer", "minsize": 100_000,
            "maxsize": 10**8, "txfee": 0, "cjfee": cjfee}


class Daemon:
    """Answers JMRequestOffers with the current book; with ``push`` also EJMFollowOffers, after
    which every change of the book is sent unasked."""

    def __init__(self, push: bool):
        self.push = push
        self.book: list[dict] = []
        self.requests = 0
        self.following = False
        self.proto: Any = None
        self.server: Any = None
        self.tasks: set = set()

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def start(self) -> int:
        def responders(proto):
            self.proto = proto

            def request_offers():
                self.requests += 1
                self._spawn(self._send())
                return {"accepted": True}
            r = {"JMRequestOffers": request_offers}
            if self.push:
                def follow():
                    self.following = True
                    self._spawn(self._send())
                    return {"accepted": True}
                r["EJMFollowOffers"] = follow
            return r
        self.server = await jamp.serve("127.0.0.1", 0, responders,
                                       commands=ALL_COMMANDS if self.push else COMMANDS)
        return self.server.sockets[0].getsockname()[1]

    async def _send(self) -> None:
        await self.proto.call_remote("JMOffers", orderbook=json.dumps(self.book),
                                     fidelitybonds="[]")

    def set_book(self, rows: list[dict]) -> None:
        self.book = list(rows)
        if self.following:
            self._spawn(self._send())


async def _collect(daemon: Daemon, script, ignored=(), **cfg_kw) -> tuple[Taker, float]:
    """Run the orderbook stage against ``daemon`` while ``script`` (a list of (delay, book))
    changes its book; returns the taker and how long the stage took."""
    port = await daemon.start()
    cfg = TakerConfig(amount=1_000_000, destination="x", limits=FeeLimits(50_000, Decimal("0.01")),
                      **cfg_kw)
    taker = Taker(wallet=None, network=object(), commitments=CommitmentStore({}), config=cfg,
                  password=None, daemon_host="127.0.0.1", daemon_port=port, chan_configs=[],
                  net_name="regtest")
    taker.ignored.update({nick: "M10: silent" for nick in ignored})
    client = DaemonClient(network="regtest", chan_configs=[], handler=taker)
    client.proto = await jamp.connect("127.0.0.1", port, client._responders(),
                                      commands=ALL_COMMANDS)
    taker.client = client

    async def play():
        for delay, rows in script:
            await asyncio.sleep(delay)
            daemon.set_book(rows)
    player = asyncio.ensure_future(play())
    t0 = time.monotonic()
    try:
        await taker._collect_orderbook()
        return taker, time.monotonic() - t0
    finally:
        player.cancel()
        client.close()
        daemon.server.close()


TWO = [_offer("J5a"), _offer("J5b")]
THREE = TWO + [_offer("J5c")]
POLICY = dict(n_makers=3, orderbook_min_wait=0.2, orderbook_quiet=0.4, orderbook_max_wait=8.0,
              orderbook_poll=0.1)


@pytest.mark.parametrize("push", [True, False], ids=["pushed", "reference-daemon"])
def test_ends_once_quiet_with_enough_makers(push):
    daemon = Daemon(push)
    taker, took = asyncio.run(_collect(daemon, [(0.1, TWO), (0.5, THREE)], **POLICY))
    assert {o.counterparty for o in taker._book} == {"J5a", "J5b", "J5c"}
    assert 0.9 <= took < 4.0, took            # the third maker at ~0.6 s + 0.4 s quiet; not 8 s
    if push:
        assert daemon.requests == 0               # never asked: woken by the pushes
    else:
        assert daemon.requests >= 5               # polled every 0.1 s


@pytest.mark.parametrize("push", [True, False], ids=["pushed", "reference-daemon"])
def test_each_change_restarts_the_quiet_period(push):
    daemon = Daemon(push)
    changes = [(0.05, THREE)] + [(0.3, [_offer("J5a", cjfee=f"0.000{i}")] + THREE[1:])
                                 for i in range(1, 5)]
    # changes 0.3 s apart, a quiet period of 0.8 s: a loaded CI machine once delayed one change
    # past a 0.4 s quiet period and the stage ended on the version before the last
    quiet = 0.8
    taker, took = asyncio.run(_collect(daemon, changes, **dict(POLICY, orderbook_quiet=quiet)))
    assert taker._book[0].cjfee == "0.0004"       # the last version
    assert took >= 1.25 + quiet - 0.05, took      # last change at ~1.25 s, then quiet


def test_too_few_makers_waits_for_the_maximum():
    daemon = Daemon(True)
    taker, took = asyncio.run(_collect(daemon, [(0.1, TWO)], **dict(POLICY,
                                                                     orderbook_max_wait=1.5)))
    assert len({o.counterparty for o in taker._book}) == 2
    assert took >= 1.5, took


def test_makers_ignored_after_a_failed_round_still_complete_the_book():
    """A replacement round: the maker we now ignore is still in the book, so the book is
    complete with n_makers makers and the stage ends on the quiet period, not the maximum."""
    daemon = Daemon(True)
    taker, took = asyncio.run(_collect(daemon, [(0.1, THREE)], ignored=["J5c"], **POLICY))
    assert len({o.counterparty for o in taker._book}) == 3
    assert took < 4.0, took


@pytest.mark.parametrize("ours", [True, False], ids=["our-daemon", "reference-daemon"])
def test_fill_refusals_asked_of_our_daemon_and_empty_from_a_reference_one(ours):
    """EJMFillRefusals (docs/amp-extensions.md): our daemon's answer comes back one printable
    line per maker, cut to 120 characters; a reference daemon does not know the command (an
    AMP error), and the taker gets an empty answer, calling the missing makers silent as
    before."""
    async def main():
        def responders(proto):
            if not ours:
                return {}
            return {"EJMFillRefusals": lambda: {
                "accepted": True,
                "refusals": {"J5a": "refused (T7)", "J5b": "x\x1b[31m" + "y" * 200}}}
        server = await jamp.serve("127.0.0.1", 0, responders,
                                  commands=ALL_COMMANDS if ours else COMMANDS)
        client = DaemonClient(network="regtest", chan_configs=[], handler=None)
        client.proto = await jamp.connect("127.0.0.1", server.sockets[0].getsockname()[1],
                                          client._responders(), commands=ALL_COMMANDS)
        try:
            return await client.fill_refusals()
        finally:
            client.close()
            server.close()
    got = asyncio.run(main())
    if ours:
        assert got == {"J5a": "refused (T7)", "J5b": "x[31m" + "y" * 114}   # ESC dropped
    else:
        assert got == {}
