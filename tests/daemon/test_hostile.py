"""Hostile network input against running daemons (D1-D7) and a channel fault (F1): every bad
input is dropped with a log line, the daemons keep running, and honest traffic still works."""

import pytest

from devstack.daemons import TestClient, nick_key, run, start_daemon, start_directory
from devstack.ircd import irc_config
from devstack.procs import wait_until
from devstack.rawpeer import RawIRC, RawOnionPeer
from jmdaemon.orderbook import MAX_OFFERS_PER_NICK, MAX_OFFERS_TO_CLIENT

from .conversation import OFFERS, full_conversation, has_offer, onion_config, wait_book, wait_offers

pytestmark = pytest.mark.stack          # starts jmdaemon processes on 127.0.0.1


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def check_clean(*procs):
    for p in procs:
        assert p.alive(), p.log()[-3000:]
    for p in procs:
        assert p.stop() == 0, p.log()[-3000:]
        assert "Traceback" not in p.log(), p.log()[-6000:]


def test_d1_d2_d3_d4_d5_hostile_onion_peers(tmp_path):
    """Attackers on the directory and on a direct link to the (serving) taker send malformed,
    oversized, unknown-type, spoofed and badly signed messages; the taker's book ends up holding
    exactly the honest maker's offers and both daemons stay up."""
    d = start_directory(tmp_path)
    tproc, mproc = start_daemon(tmp_path, "taker"), start_daemon(tmp_path, "maker")

    async def main():
        taker = await TestClient("taker").connect(tproc.port)
        maker = await TestClient("maker").connect(mproc.port)
        cfg_t = onion_config(d, serving=True)
        await maker.init(onion_config(d))
        await maker.call("JMSetup", role="MAKER", initdata=OFFERS, use_fidelity_bond=False)
        await taker.init(cfg_t)
        await taker.call("JMSetup", role="TAKER", initdata=None, use_fidelity_bond=False)
        await wait_offers(taker, maker.nick, 2)
        serving = [l for l in tproc.log().splitlines() if "serving on 127.0.0.1:" in l]
        taker_port = int(serving[-1].rsplit(":", 1)[1])

        # --- via the directory ---
        evil_key = nick_key()
        a = await RawOnionPeer(evil_key.nick).connect(d.port)
        await a.wait_handshake()
        t = taker.nick
        a.send(687, evil_key.nick + "!PUBLIC!sw0reloffer 7 27300 1000000 0 0.001")   # legit pubmsg
        a.send(687, maker.nick + "!PUBLIC!cancel 0")                 # D4 spoof: dropped by dir
        a.send(685, maker.nick + "!" + t + "!sw0absoffer 9 1 2 3 4 02ab c2ln")  # D4 spoof privmsg
        for typ in (797, 799, 801, 785, 787, 791, 12345):              # D3
            a.send(typ, "127.0.0.1:1")
        # D5: bad signature / key not matching the nick / missing signature fields
        body = "sw0absoffer 5 27300 1000000 0 100"
        other = nick_key()
        a.send(685, "%s!%s!%s %s %s" % (evil_key.nick, t, body, evil_key.pubkey_hex,
                                        evil_key.sign("tampered", "onion-network")))
        a.send(685, "%s!%s!%s %s %s" % (evil_key.nick, t, body, other.pubkey_hex,
                                        other.sign(body.split(" ", 1)[1], "onion-network")))
        a.send(685, "%s!%s!%s" % (evil_key.nick, t, body))
        a.send(685, "%s!%s!sw0absoffer 6 27300 1000000 0 100 %s %s" % (
            evil_key.nick, t, evil_key.pubkey_hex,
            evil_key.sign("6 27300 1000000 0 100", "hackint")))          # cross-channel replay
        a.send(685, "%s!%s!auth %s %s" % (evil_key.nick, t, "QUJD", "zz"))   # D1 junk
        a.send(685, "%s!%s!%s" % (evil_key.nick, t, "x" * 30000))         # big but < limit
        # barrier: a good offer sent last on the same connection; the directory relays in order,
        # so once it is in the taker's book every line above has been dropped or handled
        a.send(687, evil_key.nick + "!PUBLIC!sw0reloffer 10 27300 1000000 0 0.001")
        await a.drain()
        await wait_book(taker, has_offer(evil_key.nick, 10), "the attacker's last offer")
        # D1 malformed JSON and D2 an oversized line: the directory drops that connection
        b = await RawOnionPeer(nick_key().nick).connect(d.port)
        await b.wait_handshake()
        b.send_raw(b'{"type": "685", "line": 5}\r\n')
        c = await RawOnionPeer(nick_key().nick).connect(d.port)
        await c.wait_handshake()
        c.send_raw(b'{"type": 687, "line": "' + b"A" * 70000 + b'"}\r\n')
        e = await RawOnionPeer(nick_key().nick).connect(d.port)
        await e.wait_handshake()
        e.send_raw(b"this is not json\r\n")
        for p in (b, c, e):
            await p.drain()

        # --- a direct link to the serving taker ---
        x = await RawOnionPeer(evil_key.nick).connect(taker_port)
        await x.wait_handshake()                 # the taker answers with its own 793
        x.send(687, maker.nick + "!PUBLIC!cancel 1")                   # D4 at the client
        for typ in (797, 799, 801, 795, 789):
            x.send(typ, "J5zzzzzzzzzzzzzz;127.0.0.1:1")
        x.send(687, evil_key.nick + "!PUBLIC!sw0reloffer 8 27300 1000000 0 0.001")   # barrier
        await x.drain()
        y = await RawOnionPeer(nick_key().nick).connect(taker_port)
        y.send_raw(b'{"type": 793, "line": "' + b"B" * 70000 + b'"}\r\n')   # D2 on the client
        await y.drain()
        # the daemons close those connections: wait for that, not for time
        await wait_until(lambda: all(p.closed() for p in (b, c, e, y)), 15,
                         "the peers that sent malformed/oversized lines to be disconnected")

        book, _ = await wait_book(taker, has_offer(evil_key.nick, 8), "the direct peer's offer")
        by = {(o["counterparty"], o["oid"]) for o in book}
        assert (maker.nick, 0) in by and (maker.nick, 1) in by           # spoofed cancels ignored
        assert {(evil_key.nick, 7), (evil_key.nick, 8), (evil_key.nick, 10)} <= by   # pipes work
        assert not any(o["counterparty"] == evil_key.nick and o["oid"] in (5, 6, 9) for o in book)
        assert not any(o["counterparty"] == maker.nick and o["oid"] == 9 for o in book)
        verdicts = [v for v in taker.verify_requests if v["nick"] == evil_key.nick]
        # bad sig and replayed sig: asked, refused; the key that is not the nick's is dropped by
        # the daemon before it costs the client a check (H4)
        assert len(verdicts) == 2
        assert all(v["pubkey"] == evil_key.pubkey_hex for v in verdicts)
        # the honest conversation still works afterwards
        for cl in (a, x):
            cl.close()
        r = await taker.call("JMFill", amount=5_000_000, commitment="P" + "ab" * 32,
                             revelation="u|P|P2|s|e",
                             filled_offers={maker.nick: next(o for o in book
                                                             if o["counterparty"] == maker.nick)})
        assert r == {"accepted": True}
        await maker.wait_for("JMAuthReceived")
        fr = await taker.wait_for("JMFillResponse")
        assert fr["success"] is True
        taker.close()
        maker.close()
    run(main())
    assert "not in the whitelist" in d.log()
    assert "not in the whitelist" in tproc.log()
    assert "dropped" in tproc.log()
    check_clean(tproc, mproc, d)


def test_d7_offer_flood_memory_bounded(tmp_path):
    """300 nicks flood 60 offers each (more than the per-nick cap) plus junk; the taker's daemon
    keeps every nick's first 12 offers (D13), its memory bounded, and hands the client a ranked
    book bounded at MAX_OFFERS_TO_CLIENT offers in which the honest maker (a signed reply to
    !orderbook ranks above public-only nicks) keeps both its offers.

    The flood comes over direct links to the (serving) taker: through a directory every line
    would also be relayed to the 300 flooding peers (5.5 million lines of test harness work that
    test nothing here, and take minutes on a loaded machine)."""
    d = start_directory(tmp_path)
    tproc, mproc = start_daemon(tmp_path, "taker"), start_daemon(tmp_path, "maker")

    async def main():
        taker = await TestClient("taker").connect(tproc.port)
        maker = await TestClient("maker").connect(mproc.port)
        await maker.init(onion_config(d))
        await maker.call("JMSetup", role="MAKER", initdata=OFFERS, use_fidelity_bond=False)
        await taker.init(onion_config(d, serving=True))
        await taker.call("JMSetup", role="TAKER", initdata=None, use_fidelity_bond=False)
        await wait_offers(taker, maker.nick, 2)
        serving = [line for line in tproc.log().splitlines() if "serving on 127.0.0.1:" in line]
        taker_port = int(serving[-1].rsplit(":", 1)[1])
        rss_before = rss_kb(tproc.proc.pid)
        peers = []
        for i in range(300):
            p = await RawOnionPeer("J5flood%09d" % i).connect(taker_port)
            peers.append(p)
        for p in peers:                   # the taker takes messages only from handshaked peers
            await p.wait_handshake()
        mark = tproc.log_mark()
        for p in peers:
            for oid in range(60):
                p.send(687, "%s!PUBLIC!sw0absoffer %d 27300 %d 0 %d" % (p.nick, oid, 10 ** 7, oid))
            p.send(687, "%s!PUBLIC!sw0reloffer x y z w v" % p.nick)
            p.send(687, "%s!PUBLIC!orderbook!orderbook" % p.nick)
        for p in peers:
            await p.drain()
        # barrier: each peer's last line (a double !orderbook) is dropped with a log line; once
        # the taker's daemon has logged all 300, it has handled every offer before them
        await tproc.wait_log("repeated !orderbook", since=mark, count=300, timeout=90)
        book, _ = await wait_offers(taker, maker.nick, 2)
        rss_after = rss_kb(tproc.proc.pid)
        per_nick = {}
        for o in book:
            per_nick[o["counterparty"]] = per_nick.get(o["counterparty"], 0) + 1
        # the daemon holds each nick's first MAX_OFFERS_PER_NICK (12) offers: 300 x 12 + 2 ...
        sent = [ln for ln in tproc.log().splitlines() if "sending orderbook of" in ln][-1]
        assert "(book: %d offers of %d nicks;" % (300 * MAX_OFFERS_PER_NICK + 2, 301) in sent, sent
        # ... and hands the client the ranked book cut at MAX_OFFERS_TO_CLIENT (3,000) offers,
        # whole nicks only: the honest maker's two offers first, then 249 flooding nicks' 12
        flood_nicks = (MAX_OFFERS_TO_CLIENT - 2) // MAX_OFFERS_PER_NICK
        assert len(book) == 2 + flood_nicks * MAX_OFFERS_PER_NICK, len(book)    # 2,990
        assert len(per_nick) == 1 + flood_nicks
        assert per_nick.pop(maker.nick) == 2
        assert set(per_nick.values()) == {MAX_OFFERS_PER_NICK}
        assert [o["counterparty"] for o in book[:2]] == [maker.nick] * 2
        assert rss_after - rss_before < 30_000, (rss_before, rss_after)
        for p in peers:
            p.close()
        taker.close()
        maker.close()
        return rss_before, rss_after
    rb, ra = run(main())
    print("taker daemon RSS before/after flood: %d / %d kB" % (rb, ra))
    check_clean(tproc, mproc, d)


def test_d6_irc_unterminated_chunks_and_junk_over_ngircd(ircd, tmp_path):
    """A raw IRC client sends never-terminated chunks, junk and over-long messages to the
    taker's nick and the channel; then the full conversation still runs."""
    tproc, mproc = start_daemon(tmp_path, "taker"), start_daemon(tmp_path, "maker")

    async def main():
        taker = await TestClient("taker").connect(tproc.port)
        maker = await TestClient("maker").connect(mproc.port)
        await taker.init(irc_config(ircd))
        evil = await RawIRC("J5evilevilevilev").connect(ircd.host, ircd.port)
        for i in range(40):
            evil.send("PRIVMSG %s :%s%s ;" % (taker.nick, "!fill " if i == 0 else "", "Q" * 400))
        evil.send("PRIVMSG %s :no prefix ~" % taker.nick)
        evil.send("PRIVMSG %s :!fill 1 2 3 4 ~" % taker.nick)            # no pub/sig
        evil.send("PRIVMSG %s :!bogus a b c ~" % taker.nick)
        evil.send("PRIVMSG #joinmarket-pit-test :!orderbook!orderbook")
        evil.send("PRIVMSG #joinmarket-pit-test :!sw0reloffer 1 2")
        evil.send("PRIVMSG #joinmarket-pit-test :\x01ACTION junk\x01")
        # barrier: a good public offer last; ngircd delivers evil's lines in order, so once the
        # offer is in the taker's book the daemon has been through all the junk above
        evil.send("PRIVMSG #joinmarket-pit-test :!sw0reloffer 5 27300 1000000 0 0.001 ~")
        await wait_book(taker, has_offer(evil.nick, 5), "the IRC attacker's last offer")
        await taker.call("JMShutdown")
        taker.events.clear()
        taker.by_name.clear()
        await full_conversation(taker, maker, irc_config(ircd), irc_config(ircd))
        evil.close()
        taker.close()
        maker.close()
    run(main())
    check_clean(tproc, mproc)


def test_f1_irc_server_restart_mid_coinjoin(tmp_path):
    """The IRC server restarts between !ioauth and !tx: both daemons reconnect, the taker asks
    for offers again, and the coinjoin completes (nothing lost)."""
    from devstack.ircd import start_ircd
    srv = start_ircd(tmp_path / "ircd")
    tproc, mproc = start_daemon(tmp_path, "taker"), start_daemon(tmp_path, "maker")
    from .conversation import COMMITMENT_HEX, REVELATION, UNSIGNED_TX

    async def main():
        nonlocal srv
        taker = await TestClient("taker").connect(tproc.port)
        maker = await TestClient("maker").connect(mproc.port)
        await maker.init(irc_config(srv))
        await maker.call("JMSetup", role="MAKER", initdata=OFFERS, use_fidelity_bond=False)
        await taker.init(irc_config(srv))
        await taker.call("JMSetup", role="TAKER", initdata=None, use_fidelity_bond=False)
        book, _ = await wait_offers(taker, maker.nick, 2)
        offer = [o for o in book if o["counterparty"] == maker.nick][0]
        await taker.call("JMFill", amount=5_000_000, commitment="P" + COMMITMENT_HEX,
                         revelation=REVELATION, filled_offers={maker.nick: offer})
        assert (await taker.wait_for("JMFillResponse"))["success"] is True
        # --- the IRC server goes away and comes back on the same port
        marks = tproc.log_mark(), mproc.log_mark()
        srv.stop()
        # both daemons saw the server go (else a restart could pass unnoticed)
        await tproc.wait_log("IRC connection to", since=marks[0])
        await mproc.wait_log("IRC connection to", since=marks[1])
        srv = start_ircd(tmp_path / "ircd", port=srv.port)
        await wait_offers(taker, maker.nick, 2, timeout=90)
        assert (await taker.call("JMMakeTx", nick_list=[maker.nick], tx=UNSIGNED_TX)) == \
            {"accepted": True}
        assert (await maker.wait_for("JMTXReceived"))["tx"] == UNSIGNED_TX
        await taker.wait_for("JMSigReceived", count=2)
        taker.close()
        maker.close()
    try:
        run(main(), timeout=200)
    finally:
        srv.stop()
    assert "is back" in tproc.log() and "is back" in mproc.log()
    check_clean(tproc, mproc)
