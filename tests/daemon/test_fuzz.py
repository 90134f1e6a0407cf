"""Property-based fuzzing of every parser of the daemon (D1, D2, D3, D6, D7): whatever bytes
arrive, parsers return a value or raise only their documented error, and memory stays bounded.
Example counts are printed in the terminal summary."""
import json
import logging
import sys
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.protocols import amp as tamp

from jmcore import constants as C
from jmdaemon import crypto, limits, wire
from jmdaemon.blacklist import canonical_commitment
from jmdaemon.channels.irc import IRCMessageChannel, JMIRCClient
from jmdaemon.channels.onion_proto import OnionLineProtocol
from jmdaemon.directory import DirectoryNode
from jmdaemon.messaging import MessageChannelCollection
from jmdaemon.orderbook import Orderbook
from jmdaemon.server import JMDaemonProtocol

from .counting import count_bulk, count_example
from .fakes import RecordingSession, onion_channel_with_directory

FUZZ = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
HEAVY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

nicks = st.sampled_from(["J5aaaaaaaaaaaaaa", "J5bbbbbbbbbbbbbb", "J5cccccccccccccc", "PUBLIC", "",
                         "J5" + "x" * 40, "a!b", "J5dd;dd"])
cmds = st.sampled_from(sorted(C.PRIVATE_COMMANDS) + ["cancel", "orderbook", "bogus", ""])
tokens = st.one_of(st.text(max_size=30), st.text(alphabet="0123456789", min_size=1, max_size=25),
                   st.sampled_from(["0.00002", "-1", "1e999", "NaN", "Infinity", "27300",
                                    "99999999999999999999999", "0x10", "1_000", " 5"]))
jm_messages = st.builds(
    lambda parts: "".join(parts),
    st.lists(st.builds(lambda c, toks: "!" + c + (" " + " ".join(toks) if toks else ""),
                       cmds, st.lists(tokens, max_size=7)), min_size=1, max_size=5))
onion_types = st.sampled_from([685, 687, 789, 791, 793, 795, 797, 799, 801, 785, 787, 798, 803,
                               0, -1, 2 ** 70])


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300),
                 st.builds(lambda t, l: json.dumps({"type": t, "line": l}), onion_types, st.text()),
                 st.builds(json.dumps, st.recursive(st.none() | st.booleans() | st.integers()
                                                    | st.text(max_size=10),
                                                    lambda c: st.lists(c)
                                                    | st.dictionaries(st.text(max_size=5), c),
                                                    max_leaves=8))))
def test_d1_decode_onion_line_only_raises_valueerror(raw):
    count_example("decode_onion_line")
    try:
        t, line = wire.decode_onion_line(raw)
    except (ValueError, UnicodeDecodeError):
        return
    assert isinstance(t, int) and isinstance(line, str)


@FUZZ
@given(st.one_of(st.text(max_size=400),
                 st.lists(st.builds(lambda n, l, x: ";".join([n, l] + x), nicks,
                                    st.sampled_from(["127.0.0.1:1", "a.onion:5222",
                                                     "NOT-SERVING-ONION", "h:0", "h:99999", ":",
                                                     "h:-1", ""]),
                                    st.lists(st.sampled_from(["D", "F:ping", ""]), max_size=2)),
                          max_size=20).map(",".join)))
def test_d1_parse_peerlist_never_raises(line):
    count_example("parse_peerlist")
    for nick, loc, gone in wire.parse_peerlist(line):
        assert wire.valid_nick(nick) and wire.valid_location(loc) and isinstance(gone, bool)


@FUZZ
@given(st.one_of(st.text(max_size=200), st.builds(json.dumps, st.dictionaries(
    st.sampled_from(["app-name", "directory", "location-string", "proto-ver", "nick", "network",
                     "features", "accepted", "proto-ver-min", "proto-ver-max", "motd"]),
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20), st.just({})),
    max_size=11))))
def test_d1_handshake_parsers_only_raise_valueerror(line):
    count_example("handshake parsers")
    for parser in (wire.parse_client_handshake, wire.parse_directory_handshake):
        try:
            hs = parser(line)
        except ValueError:
            continue
        assert isinstance(hs, dict)


@FUZZ
@given(st.one_of(jm_messages, st.text(max_size=300)),
       st.sampled_from(["", " 02ab c2ln", " 02ab !!!", " zz c2ln", " 02ab", " 02ab c2ln ~"]))
def test_d1_split_signed_privmsg_never_raises(msg, tail):
    count_example("split_signed_privmsg")
    r = wire.split_signed_privmsg(msg + tail)
    if r is not None:
        cmd, body, pub, sig = r
        assert cmd in C.PRIVATE_COMMANDS and body and pub and sig


@FUZZ
@given(st.text(max_size=300))
def test_d1_split_onion_message_only_valueerror(line):
    count_example("split_onion_message")
    try:
        f, t, m = wire.split_onion_message(line)
    except ValueError:
        return
    assert m.startswith("!")


@FUZZ
@given(st.lists(st.tuples(nicks, st.one_of(st.text(max_size=60), st.sampled_from(
    ["!fill x ;", "x ;", "!tx y ~", "~", ";", "", "z ~", "!a" + "b" * 500 + " ;"]))), max_size=80))
def test_d6_chunk_assembler_bounded(feeds):
    count_example("ChunkAssembler (random)")
    a = wire.ChunkAssembler(max_message=1000, max_senders=3)
    for sender, text in feeds:
        out = a.feed(sender, text)
        assert out is None or out.startswith("!")
        assert len(a.buffers) <= 3
        assert all(e[1] <= 1000 for e in a.buffers.values())


def test_d6_unterminated_irc_chunks_keep_memory_bounded():
    """100 000 never-terminated 440-char chunks through the real twisted IRC client: the
    reassembly buffer never holds more than one message limit per sender."""
    session = RecordingSession()
    mc = IRCMessageChannel({"host": "irc.example", "port": 6667, "line_rate": 0}, "mainnet")
    MessageChannelCollection([mc], session).set_nick("J5victimvictimvi")
    client = JMIRCClient(mc)
    client.makeConnection(StringTransport())
    mc.client = client
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    piece = "A" * 440
    for i in range(100_000):
        sender = "J5attacker%06d" % (i % 50)
        first = "!fill " if i < 50 else ""
        client.lineReceived(":%s!u@h PRIVMSG J5victimvictimvi :%s%s ;" % (sender, first, piece))
        if i % 10_000 == 0:
            assert sum(e[1] for e in client.assembler.buffers.values()) <= 50 * limits.MAX_MESSAGE_LEN
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    assert len(client.assembler.buffers) <= 50
    assert peak < 50 * limits.MAX_MESSAGE_LEN * 3, peak          # a few MB, not 44 MB of chunks
    assert session.named("request_signature_verify") == []
    count_bulk("IRC unterminated chunk lines", 100_000)


@FUZZ
@given(nicks, st.sampled_from(sorted(C.OFFER_TYPES) + ["bogus"]), tokens, tokens, tokens, tokens,
       tokens)
def test_d7_orderbook_validation_never_raises(nick, otype, oid, mn, mx, fee, cj):
    count_example("Orderbook.add_offer")
    ob = Orderbook(max_offers_per_nick=3, max_nicks=4)
    if ob.add_offer(nick, otype, oid, mn, mx, fee, cj):
        (row,) = ob.offers()
        assert 0 <= row["oid"] and C.DUST_THRESHOLD <= row["minsize"] <= row["maxsize"] <= C.MAX_SATOSHIS
        assert row["txfee"] >= 0
        json.dumps(ob.offers())


def test_d7_d13_orderbook_flood_bounded_first_seen_kept():
    """6,000 nicks x 60 public offers after an honest maker: memory stays bounded (nicks,
    offers per nick, offers in all), the honest maker seen first is never evicted, and a maker
    answering our !orderbook later with a signed reply still gets in (replacing a public-only
    nick); what goes to the client is bounded and has both."""
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    ob = Orderbook()
    ob.add_offer("J5honestfirst000", "sw0reloffer", "0", "27300", "100000", "0", "0.0002",
                 private=True)

    def flood(nicks: range) -> None:
        for n in nicks:
            for oid in range(60):
                ob.add_offer("J5flood%09d" % n, "sw0absoffer", str(oid), "27300", "100000", "0",
                             "1")
    # traced until the book is full: its size in bytes of Python objects
    full_at = ob.max_nicks + 100
    flood(range(full_at))
    assert ob._full()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 30_000_000, grown
    # the rest of the flood untraced (tracing makes each allocation ~5x dearer): a full book
    # grows by nothing (each refused offer kept would be at least one more block)
    blocks = sys.getallocatedblocks()
    flood(range(full_at, 6_000))
    assert sys.getallocatedblocks() - blocks < 5_000, sys.getallocatedblocks() - blocks
    assert len(ob.by_nick) <= ob.max_nicks and len(ob) <= ob.max_offers
    assert all(len(m.offers) <= ob.max_offers_per_nick for m in ob.by_nick.values())
    assert "J5honestfirst000" in ob.by_nick
    # a late public-only newcomer is refused; a late signed reply replaces the newest public one
    assert not ob.add_offer("J5latepublic0000", "sw0reloffer", "0", "27300", "100000", "0", "0.1")
    newest = list(ob.by_nick)[-1]
    assert ob.add_offer("J5latesigned0000", "sw0reloffer", "0", "27300", "100000", "0", "0.1",
                        private=True)
    assert newest not in ob.by_nick and "J5honestfirst000" in ob.by_nick
    book = ob.offers()
    assert len(book) <= ob.max_to_client
    nicks = [o["counterparty"] for o in book]
    assert nicks[:2] == ["J5honestfirst000", "J5latesigned0000"]     # signed replies first
    size = len(json.dumps(book))
    assert size < 600_000, size                 # what reaches the client
    count_bulk("Orderbook flood offers (6 000 nicks)", 6_000 * 60 + 3)


def _bond(txid_byte, vout=0):
    import base64
    raw = b"\x30" + bytes(211) + bytes([txid_byte]) * 32 + vout.to_bytes(4, "little") + bytes(4)
    return base64.b64encode(raw).decode()


def test_d13_bonded_makers_have_their_own_room_and_a_bond_counts_for_one_nick():
    ob = Orderbook(max_nicks=10, max_bonded=3)
    for n in range(10):                                       # unbonded pool full
        ob.add_offer("J5unb%011d" % n, "sw0absoffer", "0", "27300", "100000", "0", "1",
                     private=True)
    # bonded makers still get in, in their own pool, without evicting anyone
    for n in range(3):
        assert ob.add_offer("J5bon%011d" % n, "sw0absoffer", "0", "27300", "100000", "0", "1",
                            private=True, bond=_bond(n + 1))
        assert ob.add_bond("J5bon%011d" % n, "J5taker", _bond(n + 1))
    assert len(ob.by_nick) == 13 and all("J5unb%011d" % n in ob.by_nick for n in range(10))
    # a flood of bond claims cannot push out anyone once the bonded pool is full
    assert not ob.add_offer("J5bonflood000000", "sw0absoffer", "0", "27300", "100000", "0", "1",
                            private=True, bond=_bond(99))
    # one bond utxo lends standing to one nick only: a second nick presenting it is unbonded
    ob2 = Orderbook(max_nicks=10, max_bonded=3)
    assert ob2.add_offer("J5first000000000", "sw0absoffer", "0", "27300", "100000", "0", "1",
                         private=True, bond=_bond(7))
    assert ob2.add_bond("J5first000000000", "J5taker", _bond(7))
    assert ob2.add_offer("J5sybil000000000", "sw0absoffer", "0", "27300", "100000", "0", "1",
                         private=True, bond=_bond(7))
    assert not ob2.add_bond("J5sybil000000000", "J5taker", _bond(7))
    assert [b["counterparty"] for b in ob2.fidelity_bonds()] == ["J5first000000000"]
    assert ob2.by_nick["J5sybil000000000"].rank < ob2.by_nick["J5first000000000"].rank
    # the client sees bonded makers first
    assert ob.offers()[0]["counterparty"] == "J5bon00000000000"


@FUZZ
@given(st.one_of(st.text(max_size=80), st.text(alphabet="0123456789abcdefABCDEF", min_size=64,
                                                max_size=64)))
def test_commitment_canonicalisation(text):
    count_example("canonical_commitment")
    c = canonical_commitment(text)
    if c is not None:
        assert len(c) == 64 and c == c.lower() and c == text.lower()


_BOX = crypto.as_init_encryption(crypto.init_keypair(), crypto.init_keypair().public_key)


@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=120).map(
    lambda b: __import__("base64").b64encode(b).decode())))
def test_d1_decrypt_only_raises_naclerror(text):
    count_example("decode_decrypt")
    try:
        crypto.decode_decrypt(text, _BOX)
    except crypto.NaclError:
        pass


def _session(role):
    p = JMDaemonProtocol(None)          # not connected: calls to the client are no-ops
    p.role = role
    p.jm_state = 1 if role == "MAKER" else 2
    p.nick = "J5selfselfselfse"
    p.kp = crypto.init_keypair()
    p.offerlist = [{"oid": 0, "ordertype": "sw0reloffer", "minsize": 27300, "maxsize": 10 ** 8,
                    "txfee": 0, "cjfee": "0.0002"}]
    p.active_orders = __import__("collections").OrderedDict(
        {"J5aaaaaaaaaaaaaa": {"oid": 0}})
    p.revelation = "r"
    return p


@HEAVY
@given(st.lists(st.tuples(nicks, jm_messages, st.booleans()), max_size=8),
       st.sampled_from(["MAKER", "TAKER"]))
def test_d1_d5_message_layer_dispatch_never_raises(msgs, role):
    """Arbitrary public and (verified or not) private messages through the real message layer
    and the real daemon session handlers, in both roles."""
    count_example("message layer dispatch")
    from .fakes import onion_channel_with_directory as mk
    session = _session(role)
    ch, mcc, _, proto, tr = mk("J5selfselfselfse", session=session)
    session.mcc = mcc
    for nick, msg, verified in msgs:
        mcc.on_pubmsg(ch, nick, msg)
        mcc.on_privmsg(ch, nick, msg + " 02ab c2ln")
        mcc.on_verified_privmsg(nick, msg + " 02ab c2ln", ch.hostid, verified)
        mcc._dispatch(nick, ch, msg[1:])
    assert len(mcc.pending_verify) <= mcc.max_pending
    assert len(session.orderbook.by_nick) <= session.orderbook.max_nicks


@HEAVY
@given(st.lists(st.one_of(
    st.binary(max_size=200),
    st.builds(lambda t, l: (json.dumps({"type": t, "line": l}) + "\r\n").encode(), onion_types,
              st.one_of(st.text(max_size=100), jm_messages,
                        st.builds(lambda f, t, m: f + "!" + t + m, nicks, nicks, jm_messages)))),
    max_size=12))
def test_d1_d3_onion_client_line_fuzz(chunks):
    """Random bytes and lines (types 797/799/801 included) from a directory into the real onion
    channel: never an exception out of the protocol; unknown types only dropped."""
    count_example("onion client lines")
    ch, mcc, session, proto, tr = onion_channel_with_directory("J5selfselfselfse")
    for data in chunks:
        if proto.closed:
            break
        proto.dataReceived(data)
    assert len(ch.peers) <= ch.max_peers
    # local-only / unknown types never reach the message layer
    assert all(n in ("on_welcome", "on_pubmsg", "on_privmsg", "on_nick_leave", "on_nick_seen",
                     "request_signature_verify") or n.startswith("on_")
               for n, _ in session.calls)


@HEAVY
@given(st.lists(st.one_of(
    st.binary(max_size=200),
    st.builds(lambda t, l: (json.dumps({"type": t, "line": l}) + "\r\n").encode(), onion_types,
              st.one_of(st.text(max_size=100),
                        st.builds(lambda f, t, m: f + "!" + t + m, nicks, nicks, jm_messages)))),
    max_size=12))
def test_d1_d3_d4_directory_line_fuzz(chunks):
    """Random input into our directory from a handshaked peer: it never raises, never relays a
    message whose sender is not the connection's nick, and never registers phantom peers."""
    count_example("directory lines")
    node = DirectoryNode(network="mainnet", nick="J5DIRECTORYnodeO")
    node.location = "127.0.0.1:1"
    att, victim = OnionLineProtocol(node), OnionLineProtocol(node)
    atr, vtr = StringTransport(), StringTransport()
    att.makeConnection(atr)
    victim.makeConnection(vtr)
    for p, n in ((att, "J5aaaaaaaaaaaaaa"), (victim, "J5bbbbbbbbbbbbbb")):
        p.dataReceived((wire.encode_onion_line(793, wire.client_handshake(
            n, "NOT-SERVING-ONION", "mainnet")) + "\r\n").encode())
    vtr.clear()
    for data in chunks:
        if att.closed:
            break
        att.dataReceived(data)
    assert set(node.by_nick) <= {"J5aaaaaaaaaaaaaa", "J5bbbbbbbbbbbbbb"}
    for line in [l for l in vtr.value().decode().split("\r\n") if l]:
        t, text = wire.decode_onion_line(line)
        if t in (685, 687):
            assert text.startswith("J5aaaaaaaaaaaaaa!")


@HEAVY
@given(st.lists(st.one_of(st.text(max_size=200), st.builds(
    lambda pre, tgt, m: ":%s PRIVMSG %s :%s" % (pre, tgt, m),
    st.sampled_from(["J5aaaaaaaaaaaaaa!u@h", "x", "", "!!", "J5aaaaaaaaaaaaaa"]),
    st.sampled_from(["J5selfselfselfse", "#joinmarket-pit", "other"]),
    st.one_of(jm_messages.map(lambda m: m + " ~"), jm_messages.map(lambda m: m + " ;"),
              st.text(max_size=50))),
    st.sampled_from([":s 005 me NETWORK= :x", ":s 433 * J5 :in use", "PING :x",
                     ":a!b@c QUIT :bye", ":a!b@c KICK #joinmarket-pit J5x :x", ":s 001"])),
    max_size=15))
def test_d1_irc_line_fuzz(lines):
    """Random IRC lines into the real IRC client: nothing raises — not even inside the
    handlers, whose exceptions the client would swallow and log — and every well-formed channel
    message and complete private message still reaches the message layer, unchanged and in
    order (so a handler that drops or breaks on everything fails this test)."""
    count_example("IRC lines")
    session = RecordingSession()
    mc = IRCMessageChannel({"host": "irc.example", "port": 6667, "line_rate": 0}, "mainnet")
    mcc = MessageChannelCollection([mc], session)
    mcc.set_nick("J5selfselfselfse")
    delivered = {"pub": [], "priv": []}
    for event, kind in (("on_pubmsg", "pub"), ("on_privmsg", "priv")):
        orig = getattr(mcc, event)

        def spy(ch, nick, msg, *rest, _orig=orig, _kind=kind):
            delivered[_kind].append((nick, msg))
            return _orig(ch, nick, msg, *rest)
        setattr(mcc, event, spy)
    client = JMIRCClient(mc)
    client.makeConnection(StringTransport())
    mc.client = client
    sentinel_pub = ":J5zzzzzzzzzzzzzz!u@h PRIVMSG #joinmarket-pit :!orderbook"
    sentinel_priv = [":J5zzzzzzzzzzzzzz!u@h PRIVMSG J5selfselfselfse :!fill 1 2 ;",
                     ":J5zzzzzzzzzzzzzz!u@h PRIVMSG J5selfselfselfse :3 4 02ab c2ln ~"]
    errors = _LogCapture()
    with errors:
        for line in list(lines) + [sentinel_pub] + sentinel_priv:
            client.lineReceived(line)
        client.dataReceived(b"\xff\xfe garbage \x00\r\n")
    assert errors.records == [], errors.records[:3]

    def clean(m):
        return bool(m) and m.isascii() and m.isprintable() and m[0] != "\x01"
    expected_pub = []
    for line in list(lines) + [sentinel_pub]:
        if not line.startswith(":") or " PRIVMSG #joinmarket-pit :" not in line:
            continue
        prefix, msg = line[1:].split(" PRIVMSG #joinmarket-pit :", 1)
        nick = prefix.split("!", 1)[0][:16]
        if nick and " " not in prefix and clean(msg):
            expected_pub.append((nick, msg))
    got_pub = [(n, m) for n, m in delivered["pub"] if clean(m)]
    assert got_pub == expected_pub
    assert delivered["priv"][-1] == ("J5zzzzzzzzzzzzzz", "!fill 1 23 4 02ab c2ln")


class _LogCapture(logging.Handler):
    """Collects every log record of the daemon's loggers that carries an exception."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        if record.exc_info is not None or record.levelno >= logging.ERROR:
            self.records.append(record.getMessage())

    def __enter__(self):
        logging.getLogger("jmdaemon").addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger("jmdaemon").removeHandler(self)


@HEAVY
@given(st.lists(st.one_of(
    st.binary(max_size=100),
    st.dictionaries(st.sampled_from([b"_command", b"_ask", b"bcsource", b"network", b"chan_configs",
                                     b"minmakers", b"nick", b"role", b"initdata", b"amount",
                                     b"tx", b"nick_list", b"sigs", b"orderbook.0", b"x" * 200]),
                    st.binary(max_size=60), max_size=8).map(
        lambda d: tamp.AmpBox({k: v for k, v in d.items()}).serialize() if d else b"")),
    max_size=6),
    st.sampled_from([b"JMInit", b"JMStartMC", b"JMSetup", b"JMFill", b"JMMakeTx", b"JMTXSigs",
                     b"JMMsgSignature", b"Nope", b"JMIOAuth"]))
def test_d1_amp_server_box_fuzz(chunks, command):
    """Random boxes and bytes into the real Twisted AMP server protocol: answers or closes the
    connection (framing errors), never raises out."""
    count_example("AMP server boxes")
    p = JMDaemonProtocol(None)
    tr = StringTransport()
    p.makeConnection(tr)
    p.connected = False      # no callbacks into a client
    box = tamp.AmpBox({b"_command": command, b"_ask": b"1", b"nick": b"J5x", b"chan_configs": b"[]"})
    for data in [box.serialize()] + chunks:
        p.dataReceived(data)
