"""The pieces of the flood defences, each on its own (issue 12 H3, H4; TESTING.md D8, D9, D10):
the fair queue of signature checks, backpressure, the checks made before a message may cost the
client anything, the offer-reply cache and the answers to !orderbook over the rates, and the
bounded records of nicks. The whole defences run in test_floods.py."""
from __future__ import annotations

import json
import time

from devstack.daemons import nick_key
from jmdaemon import crypto, limits, wire
from jmdaemon.limits import Backpressure, FairQueue, TokenBucket
from jmdaemon.server import JMDaemonProtocol

from .fakes import onion_channel_with_directory, sent_lines

MAKER_OFFERS = [{"oid": 0, "ordertype": "sw0reloffer", "minsize": 27300, "maxsize": 10 ** 8,
                 "txfee": 0, "cjfee": "0.0002"}]


def test_d9_fair_queue_serves_other_senders_and_the_newest_first():
    sent = []
    q = FairQueue(sent.append, per_class=32, in_flight=4)
    for i in range(1000):                         # a burst of forgeries under one name
        q.add(("M", "pubkey"), ("forged", i))
    q.add(("M", "pubkey"), ("honest", 0))        # the real one, after them
    q.add(("N", "ioauth"), ("other maker", 0))   # another sender
    assert len(sent) == 4                         # only in_flight with the client
    assert q.waiting == 32 + 1 and q.dropped == 1000 + 1 - 4 - 32
    q.done()
    q.done()
    # the newest of the flooded class (the real one), then the other sender, not 996 forgeries
    assert sent[4:] == [("honest", 0), ("other maker", 0)]
    q.done()
    assert sent[6] == ("forged", 999)              # then the newest forgery kept


def test_d9_backpressure_pauses_the_flooding_connection_and_resumes_it():
    class Conn:
        paused = False
        transport = object()

        def pauseProducing(self):
            self.paused = True

        def resumeProducing(self):
            self.paused = False
    flood, honest = Conn(), Conn()
    bp = Backpressure(per_source=10, total=100, schedule=lambda fn: fn())
    for _ in range(10):
        bp.add(flood)
    bp.add(honest)
    assert flood.paused and not honest.paused
    for _ in range(5):
        bp.done(flood)
    assert not flood.paused                       # resumed at half
    assert bp.outstanding == 6


def test_token_bucket():
    t = [0.0]
    b = TokenBucket(2.0, 3, clock=lambda: t[0])
    assert [b.allow() for _ in range(4)] == [True, True, True, False]
    t[0] += 1.0
    assert [b.allow() for _ in range(3)] == [True, True, False]


def _taker_session():
    s = JMDaemonProtocol(None)
    s.role, s.jm_state, s.nick = "TAKER", 2, "J5selfselfselfse"
    s.kp = crypto.init_keypair()
    ch, mcc, _, proto, tr = onion_channel_with_directory(s.nick, session=s)
    s.mcc = mcc
    asked = []
    s.request_signature_verify = lambda *a: asked.append(a)
    s.request_signed_message = lambda *a: None
    return s, ch, mcc, proto, asked


def _signed_privmsg(key, to, cmd, body):
    return "%s!%s!%s %s %s %s" % (key.nick, to, cmd, body, key.pubkey_hex,
                                  key.sign(body, "onion-network"))


def test_d9_what_cannot_verify_or_is_not_expected_never_reaches_the_client():
    s, ch, mcc, proto, asked = _taker_session()
    maker = nick_key()
    s.active_orders[maker.nick] = {"oid": 0}
    mkp = crypto.init_keypair()
    box = crypto.as_init_encryption(s.kp, crypto.init_pubkey(crypto.hex_pk(mkp)))
    mbox = crypto.as_init_encryption(mkp, crypto.init_pubkey(crypto.hex_pk(s.kp)))
    other = nick_key()

    def feed(line):
        proto.dataReceived(wire.encode_onion_line(685, line).encode() + b"\r\n")
    # a key that does not derive the nick
    feed("%s!%s!pubkey %s %s %s" % (maker.nick, s.nick, "ab" * 32, other.pubkey_hex,
                                    other.sign("ab" * 32, "onion-network")))
    # a command the taker does not expect from this nick now (!sig before !tx; !fill at all)
    feed(_signed_privmsg(maker, s.nick, "sig", "c2ln"))
    feed(_signed_privmsg(maker, s.nick, "fill", "0 1 2 P3"))
    # an unknown nick's !pubkey
    feed(_signed_privmsg(other, s.nick, "pubkey", "ab" * 32))
    assert asked == []
    # the maker's !pubkey is wanted (one), then no more !pubkey from it
    feed(_signed_privmsg(maker, s.nick, "pubkey", crypto.hex_pk(mkp)))
    assert len(asked) == 1
    s.crypto_boxes[maker.nick] = (crypto.hex_pk(mkp), box)
    feed(_signed_privmsg(maker, s.nick, "pubkey", "cd" * 32))
    assert len(asked) == 1
    # an !ioauth our box cannot open (a forgery under the maker's name and key) ...
    junk = crypto.encrypt_encode(b"forged", crypto.as_init_encryption(
        crypto.init_keypair(), crypto.init_pubkey(crypto.hex_pk(s.kp))))
    feed("%s!%s!ioauth %s %s %s" % (maker.nick, s.nick, junk, maker.pubkey_hex,
                                    maker.sign(junk, "onion-network")))
    assert len(asked) == 1
    # ... and the real one, which it opens
    real = crypto.encrypt_encode(b"u1 02aa cj ch sig", mbox)
    feed(_signed_privmsg(maker, s.nick, "ioauth", real))
    assert len(asked) == 2
    assert mcc.unwanted == 6


def test_d10_offer_reply_signed_once_and_requests_over_the_rate_served_newest_first():
    s = JMDaemonProtocol(None)
    s.role, s.jm_state, s.nick = "MAKER", 1, "J5selfselfselfse"
    s.offerlist = MAKER_OFFERS
    ch, mcc, _, proto, tr = onion_channel_with_directory(s.nick, session=s)
    s.mcc = mcc
    s.connected = True
    signs = []

    def sign(nick, cmd, msg, msg_to_be_signed, hostid):
        signs.append(nick)
        mcc.send_signed_privmsg(nick, cmd, msg + " 02" + "ab" * 32 + " c2ln", hostid)
    s.request_signed_message = sign
    s._serve_deferred_soon = lambda: None          # the test calls _serve_deferred itself
    s._announce_publicly_soon = lambda: None
    sent_lines(tr)
    takers = ["J5taker%09d" % i for i in range(1000)]
    for t in takers:
        s.on_orderbook_requested(t, ch, source=None)
    replies = [line for line in sent_lines(tr) if '"type": 685' in line]
    assert len(signs) == 1                         # one signature for any number of takers
    assert 0 < len(replies) <= 200                 # the per-connection rate (burst)
    assert len(s.deferred_orderbook) == 200        # the newest of the rest, kept to answer
    honest = "J5honesttaker000"
    s.on_orderbook_requested(honest, ch, source=None)
    s.orderbook_buckets = type(s.orderbook_buckets)(lambda: TokenBucket(1, 1))
    s.orderbook_bucket = TokenBucket(1, 1)
    s._serve_deferred()                            # tokens are back: the newest asker first
    (line,) = [ln for ln in sent_lines(tr) if '"type": 685' in ln]
    assert ("!" + honest + "!sw0reloffer") in line
    assert len(signs) == 1


def test_d13_records_of_nicks_are_bounded(monkeypatch):
    monkeypatch.setattr(limits, "MAX_TRACKED_NICKS", 500)
    monkeypatch.setattr(limits, "MAX_SEEN_PER_DIRECTORY", 300)
    s = JMDaemonProtocol(None)
    s.role, s.jm_state, s.nick = "TAKER", 1, "J5selfselfselfse"
    ch, mcc, _, proto, tr = onion_channel_with_directory(s.nick, session=s)
    s.mcc = mcc
    for i in range(3000):
        nick = "J5n%013d" % i
        proto.dataReceived(wire.encode_onion_line(
            687, nick + "!PUBLIC!sw0absoffer 0 27300 30000 0 1").encode() + b"\r\n")
    assert len(mcc.nicks_seen[ch]) == 500 and len(mcc.active_channels) <= 500
    link = next(iter(ch.directories.values()))
    assert len(link.seen) == 300
    assert "J5n0000000000000" in mcc.nicks_seen[ch]     # the first seen stay
    assert s.orderbook.offers()[0]["counterparty"] == "J5n0000000000000"


def test_m4_inbound_link_is_used_only_once_proven():
    from twisted.internet.testing import StringTransport

    from jmdaemon.channels.onion_proto import OnionLineProtocol
    s = JMDaemonProtocol(None)
    s.role, s.jm_state, s.nick = "MAKER", 1, "J5selfselfselfse"
    ch, mcc, _, proto, dir_tr = onion_channel_with_directory(s.nick, session=s)
    s.mcc = mcc
    taker = nick_key()
    inbound = OnionLineProtocol(ch)
    in_tr = StringTransport()
    inbound.makeConnection(in_tr)
    inbound.dataReceived(wire.encode_onion_line(793, wire.client_handshake(
        taker.nick, "NOT-SERVING-ONION", ch.network)).encode() + b"\r\n")
    mcc.nicks_seen[ch].add(taker.nick)
    sent_lines(in_tr)
    sent_lines(dir_tr)
    ch.privmsg(taker.nick, "pubkey", "ab" * 32 + " 02ab c2ln")
    assert sent_lines(in_tr) == [] and len(sent_lines(dir_tr)) == 1   # via the directory
    ch.nick_proven(taker.nick, inbound)            # a verified message came over that very link
    ch.privmsg(taker.nick, "pubkey", "ab" * 32 + " 02ab c2ln")
    assert len(sent_lines(in_tr)) == 1 and sent_lines(dir_tr) == []
    # proof over another connection does not count
    other = OnionLineProtocol(ch)
    other.makeConnection(StringTransport())
    ch.peers[taker.nick].proven = False
    ch.nick_proven(taker.nick, other)
    assert not ch.peers[taker.nick].proven


def test_d9_every_maker_of_a_round_may_refuse_over_one_connection():
    """A round's makers all reach the taker through one directory connection: each one's !error
    is verified (the budget is per maker of the round, not per connection — a per-connection
    budget of 5 dropped the sixth honest refusal, and the round waited for its timeout); after a
    maker's verified !error, no more of its !error lines reach the client."""
    s, ch, mcc, proto, asked = _taker_session()
    makers = [nick_key() for _ in range(8)]
    for m in makers:
        s.active_orders[m.nick] = {"oid": 0}

    def feed(line):
        proto.dataReceived(wire.encode_onion_line(685, line).encode() + b"\r\n")
    for m in makers:
        feed(_signed_privmsg(m, s.nick, "error", "refused"))
    assert len(asked) == len(makers)
    s.on_error(makers[0].nick, "refused")
    feed(_signed_privmsg(makers[0], s.nick, "error", "again"))
    assert len(asked) == len(makers)
    # a nick outside the round is never verified
    feed(_signed_privmsg(nick_key(), s.nick, "error", "refused"))
    assert len(asked) == len(makers)


def test_d13_a_following_taker_is_pushed_its_book_only_when_that_changed():
    """H2: under an offer flood the book changes all the time; a taker's plugin that follows it
    (EJMFollowOffers) parses a whole ranked book per push on Electrum's loop. It gets one only
    when what it would get changed (not for offers refused by the per-nick cap, nor for nicks
    past its cut), and at most one a second once the book is big."""
    from twisted.internet import reactor

    from jmdaemon.orderbook import MAX_OFFERS_PER_NICK, MAX_OFFERS_TO_CLIENT
    s = JMDaemonProtocol(None)
    s.role, s.jm_state, s.nick, s.connected = "TAKER", 1, "J5selfselfselfse", True
    pushes = []
    s.call_client = lambda name, **kw: pushes.append((name, kw))

    def offer(nick, oid):
        s.on_order_seen(nick, None, "sw0absoffer", oid, 27300, 10 ** 7, 0, oid)

    def push_due():
        """Run the scheduled push now (the reactor does not run here); the interval it keeps
        after the previous push, in seconds (its delay plus the time since that push)."""
        call = s._offers_push
        assert call is not None and call.active()
        interval = call.getTime() - reactor.seconds() + time.monotonic() - s._offers_pushed_at
        call.cancel()
        s._push_offers()
        return interval

    assert s.on_EJM_FOLLOW_OFFERS() == {"accepted": True}
    push_due()
    assert [n for n, _ in pushes] == ["JMOffers"]              # the book now (empty)
    # nicks filling the client's cut exactly: the book changed, one push
    n_nicks = MAX_OFFERS_TO_CLIENT // MAX_OFFERS_PER_NICK
    for i in range(n_nicks):
        for oid in range(MAX_OFFERS_PER_NICK):
            offer("J5flood%09d" % i, oid)
    push_due()
    assert len(pushes) == 2 and len(json.loads(pushes[-1][1]["orderbook"])) == MAX_OFFERS_TO_CLIENT
    # offers over a nick's cap are refused: nothing even scheduled
    offer("J5flood000000000", MAX_OFFERS_PER_NICK)
    assert s._offers_push is None
    # a nick past the client's cut is in the book but changes nothing the client would get
    offer("J5late0000000000", 0)
    s.on_order_cancel("J5late0000000000", 0)
    push_due()
    assert len(pushes) == 2
    # a change the client would see is pushed, a second after the last push (a big book)
    s.on_order_cancel("J5flood000000000", 0)
    assert abs(push_due() - 1.0) < 0.05
    assert len(pushes) == 3
    # a taker that asks to follow again gets the book at once, even an unchanged one
    assert s.on_JM_REQUEST_OFFERS() == {"accepted": True}
    assert s.on_EJM_FOLLOW_OFFERS() == {"accepted": True}
    push_due()
    assert len(pushes) == 5
    s._stop_following()
