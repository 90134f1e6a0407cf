"""Our two AMP extensions that let a coinjoin end on events instead of timers, through real
daemons over a real IRC server (docs/amp-extensions.md):

* ``EJMFollowOffers``: the taker's daemon pushes ``JMOffers`` whenever its book changes, until
  ``JMFill``; a client that did not ask (every reference client) never gets an unsolicited one.
* ``EJMRefuse``: a maker client's refusal reaches the taker as ``!error``, and the taker's daemon
  ends stage 1 as soon as every maker answered or refused (not at ``maker_timeout_sec``);
  ``EJMFillRefusals`` then tells the taker client who refused and why."""
from __future__ import annotations

import asyncio
import json

from devstack.daemons import TestClient, run, start_daemon
from devstack.ircd import irc_config

from .conversation import COMMITMENT_HEX, OFFERS, REVELATION


def _book(ev, nick):
    return sorted((o for o in json.loads(ev["orderbook"]) if o["counterparty"] == nick),
                  key=lambda o: o["oid"])


async def _ask_until(client, pred, timeout=30.0):
    """Poll JMRequestOffers (as a reference client does) until an answer satisfies ``pred``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        n = client.count("JMOffers")
        assert (await client.call("JMRequestOffers")) == {"accepted": True}
        ev = await client.wait_for("JMOffers", count=n + 1)
        if pred(ev):
            return ev
        assert asyncio.get_running_loop().time() < deadline, ev
        await asyncio.sleep(0.1)


async def _maker(port, ircd, cls=TestClient):
    maker = await cls("maker").connect(port)
    await maker.init(irc_config(ircd, line_rate=0))
    assert (await maker.call("JMSetup", role="MAKER", initdata=OFFERS,
                             use_fidelity_bond=False)) == {"accepted": True}
    await maker.wait_for("JMSetupDone")
    return maker


async def _taker(port, ircd, name="taker", maker_timeout_sec=20):
    taker = await TestClient(name).connect(port)
    await taker.init(irc_config(ircd, line_rate=0), maker_timeout_sec=maker_timeout_sec)
    assert (await taker.call("JMSetup", role="TAKER", initdata=None,
                             use_fidelity_bond=False)) == {"accepted": True}
    await taker.wait_for("JMSetupDone")
    return taker


def test_follow_offers_pushes_changes_only_to_who_asked(ircd, tmp_path):
    dm, dt, dr = (start_daemon(tmp_path, n) for n in ("maker", "taker", "reference-like"))

    async def main():
        maker = await _maker(dm.port, ircd)
        taker = await _taker(dt.port, ircd)
        other = await _taker(dr.port, ircd, "reference-like")   # never asks to follow
        try:
            # (the other client's book is complete before the change below: its daemon's
            # !orderbook reply from the maker cannot arrive after the change)
            await _ask_until(other, lambda kw: len(_book(kw, maker.nick)) == 2)
            asked = other.count("JMOffers")
            assert (await taker.call("EJMFollowOffers")) == {"accepted": True}
            # the book arrives without a single JMRequestOffers from us
            ev = await taker.wait_for("JMOffers", pred=lambda kw: len(_book(kw, maker.nick)) == 2)
            assert _book(ev, maker.nick)[0]["cjfee"] == "0.00002"
            # a changed offer is pushed too
            changed = [dict(OFFERS[0], cjfee="0.00003"), OFFERS[1]]
            assert (await maker.call("JMAnnounceOffers", to_announce=[changed[0]], to_cancel=[],
                                     offerlist=changed)) == {"accepted": True}
            await taker.wait_for("JMOffers", pred=lambda kw: _book(kw, maker.nick)
                                 and _book(kw, maker.nick)[0]["cjfee"] == "0.00003")
            # the other client's daemon has the same offers, but sent it nothing unasked
            assert other.count("JMOffers") == asked
            ev = await _ask_until(other, lambda kw: _book(kw, maker.nick)
                                  and _book(kw, maker.nick)[0]["cjfee"] == "0.00003")
            # JMFill ends the following: a later change is not pushed
            assert (await taker.call("JMFill", amount=5_000_000, commitment="P" + COMMITMENT_HEX,
                                     revelation=REVELATION,
                                     filled_offers={maker.nick: _book(ev, maker.nick)[0]})
                    ) == {"accepted": True}
            pushed = taker.count("JMOffers")
            again = [dict(OFFERS[0], cjfee="0.00004"), OFFERS[1]]
            await maker.call("JMAnnounceOffers", to_announce=[again[0]], to_cancel=[],
                             offerlist=again)
            await _ask_until(other, lambda kw: _book(kw, maker.nick)     # seen on the channel
                             and _book(kw, maker.nick)[0]["cjfee"] == "0.00004")
            # barrier: ask the taker's own daemon until its book has the change. A push for it
            # would be due at once (the last push is long past) and so would leave before the
            # answer to our request: every JMOffers we get now must be an answer
            asks = 0
            while True:
                asks += 1
                assert (await taker.call("JMRequestOffers")) == {"accepted": True}
                await taker.wait_for("JMOffers", count=pushed + asks)
                last = [kw for n, kw in taker.events if n == "JMOffers"][-1]
                if _book(last, maker.nick) and _book(last, maker.nick)[0]["cjfee"] == "0.00004":
                    break
                assert asks < 100, last
                await asyncio.sleep(0.1)
            assert taker.count("JMOffers") == pushed + asks
            # following is refused outside the orderbook stage (and for a maker)
            assert (await taker.call("EJMFollowOffers")) == {"accepted": False}
            assert (await maker.call("EJMFollowOffers")) == {"accepted": False}
        finally:
            for c in (maker, taker, other):
                c.close()
    try:
        run(main(), timeout=120)
    finally:
        for p in (dm, dt, dr):
            assert p.stop() == 0
            assert "Traceback" not in p.log(), p.log()[-3000:]


class RefusingMaker(TestClient):
    """A maker client that refuses every !auth, as our plugin does on T5-T7/T9."""
    __test__ = False

    def on_JMAuthReceived(self, nick, offer, commitment, revelation, amount, kphex):
        self.refused_nick = nick
        self._spawn(self._refuse(nick))

    async def _refuse(self, nick):
        self.refuse_answer = await self.call("EJMRefuse", nick=nick, reason="refused (T7)\n!x")


def test_refusal_ends_the_fill_stage_at_once(ircd, tmp_path):
    """maker_timeout_sec is 120 s; the taker's daemon answers JMFillResponse(failure) as soon as
    the only maker refused, and the maker's daemon ended the session (a late JMIOAuth for it is
    refused)."""
    dm, dt = start_daemon(tmp_path, "maker"), start_daemon(tmp_path, "taker")

    async def main():
        maker = await _maker(dm.port, ircd, RefusingMaker)
        taker = await _taker(dt.port, ircd, maker_timeout_sec=120)
        try:
            assert (await taker.call("EJMFollowOffers")) == {"accepted": True}
            ev = await taker.wait_for("JMOffers", pred=lambda kw: len(_book(kw, maker.nick)) == 2)
            assert (await taker.call("JMFill", amount=5_000_000, commitment="P" + COMMITMENT_HEX,
                                     revelation=REVELATION,
                                     filled_offers={maker.nick: _book(ev, maker.nick)[0]})
                    ) == {"accepted": True}
            fill = await taker.wait_for("JMFillResponse", timeout=30)
            assert fill == {"success": False, "ioauth_data": [maker.nick]}
            assert maker.refuse_answer == {"accepted": True}
            # EJMFillRefusals: who refused and what it said (one line, no '!'), for the taker
            # only
            assert (await taker.call("EJMFillRefusals")) == \
                {"accepted": True, "refusals": {maker.nick: "refused (T7)\\nx"}}
            assert (await maker.call("EJMFillRefusals")) == {"accepted": False, "refusals": {}}
            late = await maker.call("JMIOAuth", nick=taker.nick, utxolist={"aa" * 32 + ":0": {}},
                                    pubkey="02" + "11" * 32, cjaddr="bcrt1qx",
                                    changeaddr="bcrt1qy", pubkeysig="c2ln")
            assert late == {"accepted": False}
            # a refusal for a taker without a session is refused, nothing is sent
            assert (await maker.call("EJMRefuse", nick=taker.nick, reason="x")) == \
                {"accepted": False}
        finally:
            maker.close()
            taker.close()
    try:
        run(main(), timeout=120)
    finally:
        for p in (dm, dt):
            assert p.stop() == 0
        log = dt.log()
        assert "refused (T7)" in log and "\\n" in log.split("refused (T7)")[1][:5]
