"""Issue 12, daemon side: the blacklist file stays in the data dir (D12), our messages are at most
40,000 bytes on the wire (D2, Low), and remote text reaches the log sanitised (Low)."""
import logging
import os

import pytest
from twisted.internet.testing import StringTransport

from devstack.daemons import TestClient, nick_key, run, start_daemon, start_directory
from devstack.procs import wait_until
from jmcore import constants as C
from jmdaemon import crypto, wire
from jmdaemon.blacklist import confined_path
from jmdaemon.channels.onion_proto import OnionLineProtocol
from jmdaemon.server import JMDaemonProtocol

from .conversation import COMMITMENT_HEX, OFFERS, onion_config
from .fakes import onion_channel_with_directory, sent_lines

# ------------------------------------------------------------------------------------- D12

def test_d12_confined_path_refuses_everything_outside_the_datadir(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    outside = tmp_path / "victim.txt"
    (data / "link").symlink_to(tmp_path)             # a symlink inside pointing out
    default = os.path.join(os.path.realpath(data), "cmtdata", "commitmentlist")
    for bad in (str(outside), "../victim.txt", "cmtdata/../../victim.txt", "link/victim.txt",
                ".", "", "/etc/passwd", "a\x00b"):
        assert confined_path(str(data), bad) == (default, bool(bad)), bad
    ok = os.path.join(os.path.realpath(data), "cmtdata", "commitmentlist")
    assert confined_path(str(data), "cmtdata/commitmentlist") == (ok, False)
    assert confined_path(str(data), ok) == (ok, False)               # absolute, but inside
    assert confined_path(str(data), "sub/dir/list") == (
        os.path.join(os.path.realpath(data), "sub", "dir", "list"), False)


@pytest.mark.stack
def test_d12_network_hp2_never_writes_a_client_chosen_file_outside_the_datadir(tmp_path):
    """A client's JMInit names files outside the daemon's data dir as its blacklist; a network
    peer's public !hp2 then makes the maker daemon persist a commitment. It lands in the default
    file inside the data dir: the victim file is untouched and no folder tree is created."""
    d = start_directory(tmp_path)
    mproc = start_daemon(tmp_path, "maker")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    tree = tmp_path / "created" / "by" / "peer"
    datadir_list = tmp_path / "maker" / "cmtdata" / "commitmentlist"

    async def main():
        maker = await TestClient("maker").connect(mproc.port)
        for location in (str(victim), "../created/by/peer/list"):
            await maker.call("JMShutdown")
            await maker.init(onion_config(d), blacklist_location=location)
            assert (await maker.call("JMSetup", role="MAKER", initdata=OFFERS,
                                     use_fidelity_bond=False)) == {"accepted": True}
            evil = await nick_key_peer(d)
            commitment = COMMITMENT_HEX if location == str(victim) else "ee" * 32
            evil.send(687, "%s!PUBLIC!hp2 %s" % (evil.nick, commitment))
            await evil.drain()
            # barrier: the !hp2 landed in the confined list (and nowhere else, asserted below)
            def listed(c: str = commitment) -> bool:
                return datadir_list.exists() and c in datadir_list.read_text()
            await wait_until(listed, 10, "the published commitment in the data dir's blacklist")
            evil.close()
        maker.close()
    run(main())
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "created").exists() and not tree.exists()
    assert datadir_list.read_text().split() == [COMMITMENT_HEX, "ee" * 32]
    assert "outside the data dir" in mproc.log()
    assert mproc.stop() == 0


async def nick_key_peer(d):
    from devstack.rawpeer import RawOnionPeer
    peer = await RawOnionPeer(nick_key().nick).connect(d.port)
    await peer.wait_handshake()
    return peer


# ------------------------------------------------------------------------------------- D2: 40,000

def test_d2_onion_lines_we_send_are_at_most_40000_bytes():
    proto = OnionLineProtocol(owner=None)
    tr = StringTransport()
    proto.transport = tr
    overhead = len(wire.encode_onion_line(685, "")) + 2
    assert proto.send(685, "x" * (C.ONION_MAX_LINE_LENGTH - overhead))          # exactly the limit
    assert len(tr.value()) == C.ONION_MAX_LINE_LENGTH
    tr.clear()
    assert not proto.send(685, "x" * (C.ONION_MAX_LINE_LENGTH - overhead + 1))  # one byte over: not sent
    assert tr.value() == b""


def test_d2_oversized_privmsg_is_never_signed_or_sent_and_jmmaketx_refuses_a_huge_tx():
    """The message layer refuses, before asking the client for a signature, a private message
    whose signed onion line would exceed 40,000 bytes; a taker's JMMakeTx with a transaction
    too large for a !tx line is refused (accepted False), nothing sent."""
    session = JMDaemonProtocol(None)
    session.role, session.jm_state, session.nick = "TAKER", 4, "J5selfselfselfse"
    session.kp = crypto.init_keypair()
    ch, mcc, _, proto, tr = onion_channel_with_directory("J5selfselfselfse", session=session)
    session.mcc = mcc
    maker = "J5makermakermake"
    mkp = crypto.init_keypair()
    session.crypto_boxes[maker] = (crypto.hex_pk(mkp), crypto.as_init_encryption(
        session.kp, crypto.init_pubkey(crypto.hex_pk(mkp))))
    session.active_orders[maker] = {"oid": 0}
    mcc.nicks_seen[ch].add(maker)                     # reachable through the directory
    asked = []
    session.request_signed_message = lambda *a: asked.append(a)
    sent_lines(tr)
    assert not mcc.prepare_privmsg(maker, "error", "e" * C.ONION_MAX_LINE_LENGTH)
    assert mcc.prepare_privmsg(maker, "error", "e" * 30000)
    assert len(asked) == 1
    # JMMakeTx: ~21 kB of raw tx fits, ~23 kB does not (b64 of NaCl of b64: about 1.8x)
    assert session.on_JM_MAKE_TX([maker], b"\x01" * 21000) == {"accepted": True}
    assert session.on_JM_MAKE_TX([maker], b"\x01" * 23000) == {"accepted": False}
    assert len(asked) == 2
    # what was asked to be signed fits once signed
    for a in asked:
        assert wire.privmsg_size(session.nick, maker, a[1], a[2]) + C.SIGNATURE_OVERHEAD \
            <= C.ONION_MAX_LINE_LENGTH
    # a signature coming back over-long is not sent either
    nick, cmd, msg = asked[0][0], asked[0][1], asked[0][2]
    assert not mcc.send_signed_privmsg(nick, cmd, msg + " 02" + "ab" * 32 + " " + "A" * 12000,
                                       ch.hostid)
    assert sent_lines(tr) == []


# ------------------------------------------------------------------------------------- logs

def test_low_remote_text_is_sanitised_before_it_reaches_a_log(caplog):
    """A peer's text with newlines, ANSI escapes and bidi overrides, in an !error, a bad offer,
    a directory handshake and a blacklist path, is logged on one line with those escaped."""
    hostile = "boom\n2026-01-01 00:00:00 ERROR forged line\x1b[31m\u202e" + "z" * 500
    caplog.set_level(logging.DEBUG, logger="jmdaemon")
    session = JMDaemonProtocol(None)
    session.role, session.jm_state, session.nick = "TAKER", 2, "J5selfselfselfse"
    ch, mcc, _, proto, tr = onion_channel_with_directory("J5selfselfselfse", session=session)
    session.mcc = mcc
    mcc._dispatch("J5aaaaaaaaaaaaaa", ch, "error " + hostile)
    mcc._dispatch("J5aaaaaaaaaaaaaa", ch, "sw0reloffer 0 %s 100000 0 0.1" % hostile.replace(" ", ""))
    session._open_blacklist("/" + hostile)
    # a directory that names a hostile network and nick in its handshake
    ch2, mcc2, _, _, _ = onion_channel_with_directory(
        "J5selfselfselfse", directory_nick="J5" + hostile.replace(" ", "")[:60])
    ch3 = __import__("jmdaemon.channels.onion", fromlist=["x"]).OnionMessageChannel(
        {"directory_nodes": "127.0.0.1:5222", "test_mode": True}, network="mainnet")
    link = ch3.directories["127.0.0.1:5222"]
    p3 = OnionLineProtocol(ch3, link)
    p3.makeConnection(StringTransport())
    p3.dataReceived(wire.encode_onion_line(795, wire.directory_handshake(
        "J5dirdirdirdirdi", hostile, True)).encode() + b"\r\n")
    texts = [r.getMessage() for r in caplog.records]
    relevant = [t for t in texts if "boom" in t]
    assert len(relevant) >= 5, texts
    for t in relevant:
        assert "\n" not in t and "\x1b" not in t and "\u202e" not in t, t
        assert "\\n2026" in t or "boom\\n" in t or "...(+" in t
        assert len(t) < 800
