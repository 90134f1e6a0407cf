"""Floods through a directory that relays any sender name, as the reference's do (issue 12 H2, H3,
H4, M4; TESTING.md D8, D9, D10, D13): real daemons, real clients over authenticated AMP, a relay
process (devstack.refdirectory) and a raw hostile peer. Each test fails on the code before
issue 12 (see the docstrings)."""
from __future__ import annotations

import asyncio
import json

import pytest

from devstack import flood
from devstack.daemons import TestClient, nick_key, peak_rss_kb, run, start_daemon, start_ref_directory
from devstack.rawpeer import RawOnionPeer

from .conversation import COMMITMENT_HEX, OFFERS, REVELATION, SIGNED_TX, UNSIGNED_TX, wait_offers

pytestmark = pytest.mark.stack          # starts jmdaemon processes and a directory on 127.0.0.1


def relay_config(relay, serving=False):
    cfg = {"type": "onion", "directory_nodes": "127.0.0.1:%d" % relay.port, "test_mode": True,
           "onion_serving_host": "127.0.0.1", "serving": serving, "welcome_timeout": 10}
    if serving:
        cfg["onion_serving_port"] = 0
    return [cfg]


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Attacker:
    """A raw peer of the relay sending prepared lines (any sender name)."""

    def __init__(self):
        self.peer = None

    async def connect(self, relay):
        self.peer = await RawOnionPeer(nick_key().nick).connect(relay.port)
        await self.peer.wait_handshake()
        return self

    async def send(self, lines, batch=500, pause=0.0):
        for i in range(0, len(lines), batch):
            for line in lines[i:i + batch]:
                self.peer.send_raw(line.encode() + b"\r\n")
            await self.peer.drain()
            if pause:
                await asyncio.sleep(pause)

    def close(self):
        self.peer.close()


def check_clean(*procs):
    for p in procs:
        assert p.alive(), p.log()[-3000:]
        assert p.stop() == 0, p.log()[-3000:]
        assert "Traceback" not in p.log(), p.log()[-6000:]


async def _setup(relay, maker_cl, taker_cl, maker_serving=False, maker_timeout_sec=20):
    await maker_cl.init(relay_config(relay, serving=maker_serving))
    assert (await maker_cl.call("JMSetup", role="MAKER", initdata=OFFERS,
                                use_fidelity_bond=False)) == {"accepted": True}
    await taker_cl.init(relay_config(relay), maker_timeout_sec=maker_timeout_sec)
    assert (await taker_cl.call("JMSetup", role="TAKER", initdata=None,
                                use_fidelity_bond=False)) == {"accepted": True}
    book, _ = await wait_offers(taker_cl, maker_cl.nick, 2)
    return [o for o in book if o["counterparty"] == maker_cl.nick][0]


async def _fill(taker, maker, offer):
    r = await taker.call("JMFill", amount=5_000_000, commitment="P" + COMMITMENT_HEX,
                         revelation=REVELATION, filled_offers={maker.nick: offer})
    assert r == {"accepted": True}


# ----------------------------------------------------------------------------------------- D13

def test_d13_offer_flood_keeps_honest_makers_and_bounds_memory_and_the_book(tmp_path):
    """5,000 nicks x 50 public offers arrive at a taker's daemon after an honest maker's signed
    reply. The honest maker stays in the book (before issue 12 the 5,000-nick cap evicted the
    oldest: it), the book handed to the client is bounded (it was every offer: 36 MB), the
    daemon's memory too; a maker that answers a later !orderbook still gets in."""
    relay = start_ref_directory(tmp_path)
    tproc, mproc, lproc = (start_daemon(tmp_path, n) for n in ("taker", "maker", "late"))

    async def main():
        taker = await TestClient("taker").connect(tproc.port)
        maker = await TestClient("maker").connect(mproc.port)
        await _setup(relay, maker, taker)
        rss0 = rss_kb(tproc.proc.pid)
        attacker = await Attacker().connect(relay)
        await attacker.send(flood.offer_flood(5000, 50))
        # wait until the taker's daemon has read the whole flood
        deadline = asyncio.get_running_loop().time() + 120
        while "orderbook full" not in tproc.log() and \
                asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)
        sizes, book = [], None
        for _ in range(3):
            before = taker.count("JMOffers")
            await taker.call("JMRequestOffers")
            ev = await taker.wait_for("JMOffers", count=before + 1)
            sizes.append(len(ev["orderbook"]) + len(ev["fidelitybonds"]))
            book = json.loads(ev["orderbook"])
        nicks = [o["counterparty"] for o in book]
        assert nicks[:2] == [maker.nick, maker.nick], nicks[:5]        # kept, and ranked first
        # a maker that comes later answers the taker's next !orderbook with a signed reply
        late = await TestClient("late").connect(lproc.port)
        await late.init(relay_config(relay))
        assert (await late.call("JMSetup", role="MAKER", initdata=OFFERS,
                                use_fidelity_bond=False)) == {"accepted": True}
        await taker.call("JMStartMC", nick=taker.nick)                 # the next round
        await taker.wait_for("JMUp", count=2)
        assert (await taker.call("JMSetup", role="TAKER", initdata=None,
                                 use_fidelity_bond=False)) == {"accepted": True}
        book2, _ = await wait_offers(taker, late.nick, 2)
        assert maker.nick in {o["counterparty"] for o in book2}
        attacker.close()
        for c in (taker, maker, late):
            c.close()
        return rss0, max(sizes), len(book)
    rss0, size, n_offers = run(main(), timeout=400)
    peak = peak_rss_kb(tproc.proc.pid)
    print("D13: taker daemon RSS %d kB before the flood, peak %d kB; book to the client %d offers,"
          " %d bytes" % (rss0, peak, n_offers, size))
    assert size < 600_000, size
    assert peak - rss0 < 30_000, (rss0, peak)
    assert "orderbook full" in tproc.log()
    check_clean(tproc, mproc, lproc)
    relay.stop()


# ----------------------------------------------------------------------------------------- D8

def test_d8_fill_flood_never_evicts_a_session_past_auth(tmp_path):
    """After the honest taker's !auth reached the maker, 1,000 correctly signed !fill from
    throw-away nicks arrive. The honest session survives (before issue 12, 200 evicted it and
    its !tx was dropped), the flood meets backpressure: few of the fills cost the maker's client
    a signature check or a !pubkey signature."""
    relay = start_ref_directory(tmp_path)
    tproc, mproc = start_daemon(tmp_path, "taker"), start_daemon(tmp_path, "maker")

    async def main():
        taker = await TestClient("taker").connect(tproc.port)
        maker = await TestClient("maker").connect(mproc.port)
        offer = await _setup(relay, maker, taker)
        await _fill(taker, maker, offer)
        await maker.wait_for("JMAuthReceived")
        fr = await taker.wait_for("JMFillResponse")
        assert fr["success"] is True
        verifies0, signs0 = len(maker.verify_requests), len(maker.sign_requests)
        attacker = await Attacker().connect(relay)
        keys = flood.fill_keys(1000)
        await attacker.send(flood.fill_flood(keys, maker.nick))
        await asyncio.sleep(8)
        # the honest session goes on: !tx reaches the maker, its !sig the taker
        assert (await taker.call("JMMakeTx", nick_list=[maker.nick], tx=UNSIGNED_TX)) \
            == {"accepted": True}
        await maker.wait_for("JMTXReceived", timeout=60)
        await taker.wait_for("JMSigReceived", count=2, timeout=60)
        attacker.close()
        taker.close()
        maker.close()
        return (len(maker.verify_requests) - verifies0,
                sum(1 for s in maker.sign_requests[signs0:] if s["cmd"] == "pubkey"))
    verified, pubkeys = run(main(), timeout=300)
    print("D8: of 1000 !fill, the maker's client verified %d and signed %d !pubkey"
          % (verified, pubkeys))
    assert verified <= 100 and 1 <= pubkeys <= 40, (verified, pubkeys)
    assert "!fill refused" in mproc.log()
    check_clean(tproc, mproc)
    relay.stop()


# ----------------------------------------------------------------------------------------- D9

# serial: with other tests' processes on the same cores the plugin checks fewer signatures a
# second and the honest message is lost more often (see the docstring)
@pytest.mark.serial
def test_d9_junk_flood_does_not_lose_honest_ioauth_and_sig(tmp_path):
    """50,000 badly signed private messages reach the taker's daemon during a coinjoin, most of
    them under the maker's nick and real pubkey. Junk that cannot verify never costs the client a
    check, the daemon's memory stays bounded and both daemons stay clean; the honest !pubkey,
    !ioauth and !sig reach the client (before issue 12 the daemon dropped the oldest of 2,000
    queued checks: honest ones among them).

    The last part is not guaranteed: forgeries under the maker's nick *and* real pubkey pass every
    check the keyless daemon can make, and a flood that goes on after the real message, faster
    than the plugin checks signatures, can push it out of its class (docs/daemon-limits.md, "What
    the queue does not solve"; batched signature checks are the fix, not done). It happens in
    one run in four to three here, more on a loaded machine: then the test says so as an expected
    failure (xfail) after every other assertion held — and after checking that the client never
    saw the real !pubkey verify, so a slow round is not passed off as that limit — instead of
    turning CI red at random."""
    relay = start_ref_directory(tmp_path)
    tproc, mproc = start_daemon(tmp_path, "taker"), start_daemon(tmp_path, "maker")

    async def main():
        taker = await TestClient("taker").connect(tproc.port)
        maker = await TestClient("maker").connect(mproc.port)
        # the honest messages wait behind the junk read before them: the stage-1 timer has
        # room for that (the delay is printed: ~9 s here, alone on 2 cores, against 30)
        offer = await _setup(relay, maker, taker, maker_timeout_sec=30)
        maker_pub = next(v["pubkey"] for v in taker.verify_requests if v["nick"] == maker.nick)
        attacker = await Attacker().connect(relay)
        junk = flood.junk_flood(taker.nick, [(maker.nick, maker_pub)], 50_000)
        flooding = asyncio.ensure_future(attacker.send(junk, batch=1000, pause=0.02))
        await asyncio.sleep(0.5)
        t0 = asyncio.get_running_loop().time()
        checked_before_fill = len(taker.verify_requests)
        await _fill(taker, maker, offer)
        fr = await taker.wait_for("JMFillResponse", timeout=200)
        honest = bool(fr["success"]) and maker.nick in fr["ioauth_data"]

        if honest:
            print("D9: !ioauth checked %.1f s after the !fill"
                  % (asyncio.get_running_loop().time() - t0))
            assert (await taker.call("JMMakeTx", nick_list=[maker.nick], tx=UNSIGNED_TX)) \
                == {"accepted": True}
            await taker.wait_for("JMSigReceived", count=2, timeout=200)
        await flooding
        await asyncio.sleep(3)
        if not honest:
            # the known limit is the honest !pubkey pushed out before the client saw it (junk
            # !ioauth and !sig cannot open with the session's box, so they never reach the
            # client): had the client seen it verify, even late, the loss is something else
            real_pubkey = [v for v in taker.verify_requests[checked_before_fill:]
                           if v["nick"] == maker.nick and v["ok"]]
            assert not real_pubkey, ("the maker's !pubkey reached the client and verified, yet "
                                     "no !ioauth in time", fr)
        attacker.close()
        taker.close()
        maker.close()
        random_key = sum(1 for v in taker.verify_requests if v["nick"].startswith("J5jk"))
        return len(taker.verify_requests), random_key, honest
    checks, random_key, honest = run(main(), timeout=400)
    peak = peak_rss_kb(tproc.proc.pid)
    print("D9: 50,000 junk messages cost the taker's client %d signature checks; daemon peak RSS "
          "%d kB" % (checks, peak))
    assert random_key == 0                    # junk whose key is not its nick's: never asked
    assert peak < 80_000
    check_clean(tproc, mproc)
    relay.stop()
    if not honest:
        # pushed out means the daemon dropped checks of a class; without a drop the round was
        # lost to something else (a slow machine against the 30 s timer, a bug): a failure
        assert "the oldest dropped" in tproc.log(), "no !ioauth, yet the daemon dropped no check"
        pytest.xfail("the maker's real !ioauth was pushed out by forgeries under its own nick and "
                     "pubkey (the known limit in docs/daemon-limits.md)")


# ----------------------------------------------------------------------------------------- D10

def test_d10_orderbook_flood_from_cycling_nicks_costs_the_client_almost_nothing(tmp_path):
    """100,000 !orderbook from 100,000 nicks reach a maker's daemon: its client is asked to sign
    our offers once (not once per nick: before issue 12 it signed one reply per request), the
    replies themselves are rate-limited per connection, memory stays bounded, and an honest
    taker still gets the offers."""
    relay = start_ref_directory(tmp_path)
    tproc, mproc = start_daemon(tmp_path, "taker"), start_daemon(tmp_path, "maker")

    async def main():
        taker = await TestClient("taker").connect(tproc.port)
        maker = await TestClient("maker").connect(mproc.port)
        await _setup(relay, maker, taker)
        signs0 = len(maker.sign_requests)
        rss0 = rss_kb(mproc.proc.pid)
        attacker = await Attacker().connect(relay)
        await attacker.send(flood.orderbook_flood(100_000), batch=2000)
        await asyncio.sleep(5)
        taker.key = nick_key()                       # a new taker (new nick) asks again
        taker.nick = taker.key.nick
        await taker.call("JMStartMC", nick=taker.nick)
        await taker.wait_for("JMUp", count=2, timeout=60)
        assert (await taker.call("JMSetup", role="TAKER", initdata=None,
                                 use_fidelity_bond=False)) == {"accepted": True}
        await wait_offers(taker, maker.nick, 2)
        attacker.close()
        taker.close()
        maker.close()
        offer_signs = sum(1 for s in maker.sign_requests[signs0:]
                          if s["cmd"] in ("sw0reloffer", "sw0absoffer"))
        return offer_signs, rss0
    offer_signs, rss0 = run(main(), timeout=400)
    peak = peak_rss_kb(mproc.proc.pid)
    print("D10: 100,000 !orderbook made the maker's client sign %d offer replies; daemon RSS "
          "%d kB before, peak %d kB" % (offer_signs, rss0, peak))
    assert offer_signs <= 2, offer_signs
    assert peak - rss0 < 30_000
    assert "over the rate limit" in mproc.log()
    check_clean(tproc, mproc)
    relay.stop()


# ----------------------------------------------------------------------------------------- M4

def test_m4_a_nick_claimed_on_an_inbound_link_gets_nothing_until_proven(tmp_path):
    """An attacker connects directly to the serving maker and claims the honest taker's nick in
    its handshake. Nothing meant for the taker goes over that link (before issue 12 the maker's
    !pubkey and !ioauth did, and the taker never got them); the coinjoin runs via the relay."""
    relay = start_ref_directory(tmp_path)
    tproc, mproc = start_daemon(tmp_path, "taker"), start_daemon(tmp_path, "maker")

    async def main():
        taker = await TestClient("taker").connect(tproc.port)
        maker = await TestClient("maker").connect(mproc.port)
        offer = await _setup(relay, maker, taker, maker_serving=True)
        serving = [ln for ln in mproc.log().splitlines() if "serving on 127.0.0.1:" in ln]
        maker_port = int(serving[-1].rsplit(":", 1)[1])
        impostor = await RawOnionPeer(taker.nick).connect(maker_port)
        await impostor.wait_handshake()
        await asyncio.sleep(0.5)
        await _fill(taker, maker, offer)
        fr = await taker.wait_for("JMFillResponse", timeout=60)
        assert fr["success"] is True
        assert (await taker.call("JMMakeTx", nick_list=[maker.nick], tx=UNSIGNED_TX)) \
            == {"accepted": True}
        await taker.wait_for("JMSigReceived", count=2, timeout=60)
        await taker.call("JMPushTx", nick=maker.nick, tx=SIGNED_TX)
        await maker.wait_for("JMTXBroadcast", timeout=60)
        got = [(t, line) for t, line in impostor.received if t in (685, 687)]
        impostor.close()
        taker.close()
        maker.close()
        return got
    got = run(main(), timeout=300)
    assert not any(t == 685 for t, _ in got), got[:3]
    check_clean(tproc, mproc)
    relay.stop()
