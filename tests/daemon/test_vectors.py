"""Byte-for-byte checks against tests/vectors/: IRC chunk lines, onion lines and handshakes,
NaCl boxes, and the signed-message layout the daemon hands to the client (docs/protocol.md §2-§6)."""
import json

import pytest
from twisted.internet.testing import StringTransport

from jmdaemon import crypto, wire
from jmdaemon.channels.irc import IRCMessageChannel, JMIRCClient
from jmdaemon.messaging import MessageChannelCollection
from tests.vectors import VECTORS as VEC

from .fakes import RecordingSession, onion_channel_with_directory, sent_lines


def load(name):
    return json.loads((VEC / name).read_text())


# ------------------------------------------------------------------ IRC
def test_irc_chunk_lines_match_vector():
    v = load("irc_chunking.json")
    lines = wire.irc_privmsg_lines(v["to_nick"], v["cmd"], v["message_after_signing"])
    assert lines == v["lines_sent"]
    assert [len(l) for l in lines] == v["line_lengths"]


def test_irc_packed_offer_line_matches_vector():
    v = load("irc_chunking.json")
    offers = ["!sw0reloffer 0 27300 99988888 0 0.00002", "!sw0absoffer 1 27300 99988888 0 250"]
    assert wire.irc_announce_lines("#joinmarket-pit", offers) == v["public_offer_lines"]


def test_irc_client_sends_vector_lines_and_reassembles():
    """The real twisted IRC client writes exactly the vector lines, and a receiving client
    reassembles them into ``!cmd message``."""
    v = load("irc_chunking.json")
    mc = IRCMessageChannel({"host": "irc.example", "port": 6667, "line_rate": 0}, "mainnet")
    mc.set_nick("J55tCWg6uXrNajVe")
    client = JMIRCClient(mc)
    tr = StringTransport()
    client.makeConnection(tr)
    tr.clear()
    mc.client = client
    mc.privmsg(v["to_nick"], v["cmd"], v["message_after_signing"])
    out = [l for l in tr.value().decode().split("\r\n") if l]
    assert out == v["lines_sent"]
    # receive side
    session = RecordingSession()
    rx = IRCMessageChannel({"host": "irc.example", "port": 6667, "line_rate": 0}, "mainnet")
    rmcc = MessageChannelCollection([rx], session)
    rmcc.set_nick(v["to_nick"])
    complete = []
    orig = rmcc.on_privmsg

    def spy(mc, nick, msg, source=None):
        complete.append((nick, msg, mc.hostid))
        return orig(mc, nick, msg, source)
    rmcc.on_privmsg = spy
    rclient = JMIRCClient(rx)
    rclient.makeConnection(StringTransport())
    rx.client = rclient
    for line in v["lines_sent"]:
        rclient.lineReceived(":J55tCWg6uXrNajVe!u@h " + line)
    assert complete == [("J55tCWg6uXrNajVe", "!" + v["cmd"] + " " + v["message_after_signing"],
                         "irc.example6667")]
    # the vector's "ciphertext" is not one our (absent) box opens: dropped before it costs the
    # client a signature check (H4)
    assert session.named("request_signature_verify") == []


# ------------------------------------------------------------------ onion lines
def test_onion_handshake_lines_match_vector():
    v = load("onion_messages.json")
    assert wire.encode_onion_line(793, wire.client_handshake(
        "J55tCWg6uXrNajVe", "NOT-SERVING-ONION", "mainnet")) == v["taker_handshake_line"]
    loc = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion:5222"
    assert wire.encode_onion_line(793, wire.client_handshake(
        "J57MaCDjudx6HHyC", loc, "mainnet")) == v["maker_handshake_line"]
    assert wire.encode_onion_line(795, wire.directory_handshake(
        "J56eK5GFGnQBECnX", "mainnet", True,
        "Default MOTD, replace with information for the directory.")) == v["directory_dn_handshake_line"]


def test_onion_peerlist_and_pubmsg_lines_match_vector():
    v = load("onion_messages.json")
    loc = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion:5222"
    dloc = "jmarketxf5wc4aldf3slm5u6726zsky52bqnfv6qyxe5hnafgly6yuyd.onion:5222"
    assert wire.encode_onion_line(789, wire.format_peerlist(
        [("J57MaCDjudx6HHyC", loc, False), ("J56eK5GFGnQBECnX", dloc, False)])) == v["peerlist_join_line"]
    assert wire.encode_onion_line(789, wire.format_peerlist(
        [("J57MaCDjudx6HHyC", loc, True)])) == v["peerlist_leave_line"]
    t, line = wire.decode_onion_line(v["peerlist_join_line"])
    assert t == 789 and wire.parse_peerlist(line) == [("J57MaCDjudx6HHyC", loc, False),
                                                      ("J56eK5GFGnQBECnX", dloc, False)]
    assert wire.parse_peerlist("J5x;a.onion:5222;F:ping+nick_auth") == []     # NG entry skipped
    assert wire.parse_peerlist("J5x;a.onion:5222;D;extra") == []


def test_onion_channel_emits_vector_lines():
    """Our onion channel, connected to a directory, sends the vector's handshake and pubmsgs."""
    v = load("onion_messages.json")
    ch, mcc, session, proto, tr = onion_channel_with_directory("J55tCWg6uXrNajVe")
    # the first line it sent on connect was its handshake (before we cleared nothing)
    assert sent_lines(tr)[0] == v["taker_handshake_line"]
    mcc.pubmsg("!orderbook")
    assert sent_lines(tr) == [v["pubmsg_orderbook_line"]]
    ch2, mcc2, _, _, tr2 = onion_channel_with_directory("J57MaCDjudx6HHyC")
    sent_lines(tr2)
    mcc2.announce_orders([{"oid": 0, "ordertype": "sw0reloffer", "minsize": 27300,
                           "maxsize": 99988888, "txfee": 0, "cjfee": "0.00002"}])
    mcc2.cancel_orders([0])
    mcc2.pubmsg("!hp2 e90900469e3c76d54bd9d0f792eb9616b65b474713f564bdac7549401bbc7807")
    assert sent_lines(tr2) == [v["pubmsg_offer_line"], v["pubmsg_cancel_line"], v["pubmsg_hp2_line"]]


def test_our_directory_reply_matches_reference_directory():
    """Our directory answers a handshake with the same 795 line as the Ref directory did."""
    from jmdaemon.channels.onion_proto import OnionLineProtocol
    from jmdaemon.directory import DirectoryNode
    v = load("onion_directory_experiment.json")
    node = DirectoryNode(network="testnet", nick="J5DIRECTORYnodeO",
                         motd="Default MOTD, replace with information for the directory.")
    node.location = "127.0.0.1:18181"
    a, atr = OnionLineProtocol(node), StringTransport()
    a.makeConnection(atr)
    a.dataReceived(wire.encode_onion_line(793, wire.client_handshake(
        "J5aaaaaaaaaaaaaa", "NOT-SERVING-ONION", "testnet")).encode() + b"\r\n")
    assert sent_lines(atr) == [v["A_handshake_reply"]]
    b, btr = OnionLineProtocol(node), StringTransport()
    b.makeConnection(btr)
    b.dataReceived(wire.encode_onion_line(793, wire.client_handshake(
        "J5bbbbbbbbbbbbbb", "127.0.0.1:18999", "testnet")).encode() + b"\r\n")
    assert sent_lines(btr) == [v["B_handshake_reply"]]
    # pubmsg relay and privmsg relay + peer-location push, as the reference does
    a.dataReceived(v["B_got_pubmsg"].encode() + b"\r\n")
    assert sent_lines(btr) == [v["B_got_pubmsg"]]
    a.dataReceived(v["B_got_privmsg"].encode() + b"\r\n")
    assert sent_lines(btr) == [v["B_got_privmsg"], v["B_then_got"]]
    b.dataReceived(v["A_got_privmsg"].encode() + b"\r\n")
    got = sent_lines(atr)
    assert got[0] == v["A_got_privmsg"]
    assert got[1] == v["A_got_spoofed_cancel_echo"]   # B serves, so A learns B's location
    # the spoofed cancel the Ref directory relayed is dropped by ours (nick bound to connection)
    b.dataReceived(v["A_spoofed_cancel_forwarded_to_A"].replace("J5bbbbbbbbbbbbbb", "J5aaaaaaaaaaaaaa", 1)
                   .encode() + b"\r\n")
    assert sent_lines(atr) == [] and node.stats["dropped"] == 1
    # 797 and 799 neither register a phantom peer nor close the connection
    a.dataReceived(b'{"type": 797, "line": "127.0.0.1:1"}\r\n{"type": 799, "line": ""}\r\n')
    assert not a.closed and set(node.by_nick) == {"J5aaaaaaaaaaaaaa", "J5bbbbbbbbbbbbbb"}


# ------------------------------------------------------------------ NaCl
def test_nacl_box_matches_vector():
    v = load("nacl_box.json")
    tkp = crypto.init_keypair(v["taker_nacl_sk"])
    mkp = crypto.init_keypair(v["maker_nacl_sk"])
    assert crypto.hex_pk(tkp) == v["taker_nacl_pk"] and crypto.hex_pk(mkp) == v["maker_nacl_pk"]
    tbox = crypto.as_init_encryption(tkp, crypto.init_pubkey(v["maker_nacl_pk"]))
    mbox = crypto.as_init_encryption(mkp, crypto.init_pubkey(v["taker_nacl_pk"]))
    wire_b64 = crypto.encrypt_encode(v["plaintext"].encode(), tbox,
                                     nonce=bytes.fromhex(v["nonce_fixed_for_vector"]))
    assert wire_b64 == v["wire_base64"]
    assert crypto.decode_decrypt(v["wire_base64"], mbox).decode() == v["plaintext"]
    # fresh nonces in real use
    assert crypto.encrypt_encode(b"x", tbox) != crypto.encrypt_encode(b"x", tbox)
    with pytest.raises(crypto.NaclError):
        crypto.decode_decrypt(v["wire_base64"][:-8] + "AAAAAAA=", mbox)
    with pytest.raises(crypto.NaclError):
        crypto.init_pubkey("zz" * 32)


# ------------------------------------------------------------------ signing layout via AMP
def test_outgoing_signing_request_and_line_match_vector():
    """prepare_privmsg asks the client to sign exactly ``body + hostid``; the returned
    ``msg_to_return`` becomes exactly the vector's onion line."""
    v = load("privmsg_signing.json")
    ex = v["examples"][0]
    ch, mcc, session, proto, tr = onion_channel_with_directory(ex["from"])
    mcc.nicks_seen[ch].add(ex["to"])
    sent_lines(tr)
    mcc.prepare_privmsg(ex["to"], "fill", ex["body"])
    ((nick, cmd, msg, to_sign, hostid),) = session.named("request_signed_message")
    assert (nick, cmd, msg, hostid) == (ex["to"], "fill", ex["body"], "onion-network")
    assert to_sign == ex["signed_string"]
    pub = v["taker_nick_pubkey"]
    assert mcc.send_signed_privmsg(ex["to"], "fill", ex["body"] + " " + pub + " " + ex["sig_base64_der"],
                                   "onion-network")
    assert sent_lines(tr) == [ex["onion_json_line_without_CRLF"]]
    # a signature for something the daemon never asked to sign is not sent
    assert not mcc.send_signed_privmsg(ex["to"], "fill", "forged " + pub + " sig", "onion-network")
    assert sent_lines(tr) == []


@pytest.mark.parametrize("idx", [0, 1, 2])
def test_incoming_verification_request_matches_vector(idx):
    """An onion privmsg makes the daemon ask for JMRequestMsgSigVerify with msg = signed_string,
    fullmsg = the message as received, hostid onion-network, hashlen 10, max_encoded 14."""
    v = load("privmsg_signing.json")
    ex = v["examples"][idx]
    boxes = {}
    if ex["onion_json_line_without_CRLF"].split("!", 2)[2].startswith("auth "):
        nb = load("nacl_box.json")             # the encrypted one: the maker holds the box
        mkp = crypto.init_keypair(nb["maker_nacl_sk"])
        boxes[ex["from"]] = crypto.as_init_encryption(mkp, crypto.init_pubkey(nb["taker_nacl_pk"]))
    ch, mcc, session, proto, tr = onion_channel_with_directory(
        ex["to"], session=RecordingSession(boxes=boxes))
    proto.dataReceived(ex["onion_json_line_without_CRLF"].encode() + b"\r\n")
    ((msg, fullmsg, sig, pub, nick, hl, me, hostid),) = session.named("request_signature_verify")
    assert msg == ex["signed_string"]
    assert sig == ex["sig_base64_der"] and nick == ex["from"] and (hl, me) == (10, 14)
    assert hostid == "onion-network"
    assert fullmsg == json.loads(ex["onion_json_line_without_CRLF"])["line"].split("!", 2)[2].join(["!", ""])
    if "receiver_view_message" in ex:
        assert fullmsg == ex["receiver_view_message"]
    # the real client-side check (electrum_ecc) accepts it
    from devstack.daemons import verify_request
    assert verify_request(msg, sig, pub, nick, hl, me)
    assert not verify_request(msg.replace("onion-network", "hackint"), sig, pub, nick, hl, me)


def test_irc_hostid_variant_matches_vector():
    v = load("privmsg_signing.json")
    ex = v["examples"][3]
    session = RecordingSession()
    mc = IRCMessageChannel({"host": "irc.hackint.org", "port": 6697, "line_rate": 0}, "mainnet")
    MessageChannelCollection([mc], session).set_nick(v["maker_nick"])
    client = JMIRCClient(mc)
    client.makeConnection(StringTransport())
    mc.client = client
    client.lineReceived(":irc.hackint.org 005 %s NETWORK=hackint :are supported" % v["maker_nick"])
    assert mc.hostid == "hackint"
    for line in wire.irc_privmsg_lines(v["maker_nick"], "fill", ex["message"][len("!fill "):]):
        client.lineReceived(":%s!u@h %s" % (v["taker_nick"], line))
    ((msg, fullmsg, sig, pub, nick, hl, me, hostid),) = session.named("request_signature_verify")
    assert (msg, fullmsg, hostid) == (ex["signed_string"], ex["message"], "hackint")


def test_encrypted_auth_is_decrypted_only_after_verification():
    """The !auth vector: the daemon asks for verification of the ciphertext body, and on a
    positive answer decrypts it with the session's box and dispatches the plaintext."""
    v = load("privmsg_signing.json")
    nb = load("nacl_box.json")
    ex = v["examples"][2]
    mkp = crypto.init_keypair(nb["maker_nacl_sk"])
    mbox = crypto.as_init_encryption(mkp, crypto.init_pubkey(nb["taker_nacl_pk"]))
    session = RecordingSession(boxes={ex["from"]: mbox})
    ch, mcc, session, proto, tr = onion_channel_with_directory(ex["to"], session=session)
    proto.dataReceived(ex["onion_json_line_without_CRLF"].encode() + b"\r\n")
    ((msg, fullmsg, sig, pub, nick, hl, me, hostid),) = session.named("request_signature_verify")
    assert session.named("on_seen_auth") == []
    mcc.on_verified_privmsg(nick, fullmsg, hostid, False)          # failed verification: dropped
    assert session.named("on_seen_auth") == []
    proto.dataReceived(ex["onion_json_line_without_CRLF"].encode() + b"\r\n")
    mcc.on_verified_privmsg(nick, fullmsg, hostid, True)
    assert session.named("on_seen_auth") == [(ex["from"], ex["plaintext_before_encryption"])]
    # a verification answer for a message we never asked about is ignored
    mcc.on_verified_privmsg(nick, fullmsg, hostid, True)
    assert len(session.named("on_seen_auth")) == 1
