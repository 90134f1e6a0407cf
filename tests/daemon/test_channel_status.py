"""Directory nodes that serve every client, and channels a user can see:

* a joinmarket-ng-style client's GETPEERLIST (791) always gets a PEERLIST (789), empty or not,
  and joinmarket-ng's feature is announced to it (reference clients get the reference reply);
* the EJMChannelStatus extension reports each directory's state: a directory that closes the
  connection before answering our handshake is `refused` with that reason (and logged), a
  closed port is `unreachable`, a refused JMInit says why;
* Tor missing ends the plugin's wait for the channels at once with one message naming the port;
* against a daemon without the extension (the reference's) the client degrades: no report."""
from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from devstack.daemons import TestClient, run, start_daemon, start_directory
from devstack.procs import free_port
from devstack.rawpeer import RawOnionPeer
from electrum_joinmarket.link.client import DaemonClient, DaemonError
from jmcore import amp as jamp
from jmcore import linkauth
from jmcore.commands import COMMANDS

NG_FEATURES = {"peerlist_features": True, "ping": True, "neutrino_compat": True}


@pytest.mark.stack
def test_c2_ng_getpeerlist_gets_a_peerlist(tmp_path):
    d = start_directory(tmp_path)

    async def main():
        ng = RawOnionPeer("J5ngTakerXXXXXXX")
        await ng.connect(d.port, handshake=False)
        ng.send(793, json.dumps({"app-name": "joinmarket", "directory": False,
                                 "location-string": "NOT-SERVING-ONION", "proto-ver": 5,
                                 "features": NG_FEATURES, "nick": ng.nick,
                                 "network": "testnet"}))
        hs = await ng.wait_handshake()
        assert hs["accepted"] is True and hs["features"].get("peerlist_features") is True
        t0 = time.monotonic()
        ng.send(791, "")
        while not [x for x in ng.received if x[0] == 789]:
            assert time.monotonic() - t0 < 30, ng.received      # NG would wait 120 s
            await asyncio.sleep(0.02)
        assert [line for t, line in ng.received if t == 789] == [""]   # nobody serves: empty
        # a reference client gets the reference's reply (no features) and its location
        # becomes part of the next peerlist
        ref = await RawOnionPeer("J5refMakerXXXXXX", location="127.0.0.1:18999").connect(d.port)
        # the directory registers the peer in the same reactor turn that sends this reply
        assert (await ref.wait_handshake())["features"] == {}
        ng.received.clear()
        ng.send(791, "")
        for _ in range(100):
            if [x for x in ng.received if x[0] == 789]:
                break
            await asyncio.sleep(0.02)
        assert [line for t, line in ng.received if t == 789] == ["J5refMakerXXXXXX;127.0.0.1:18999"]
        ng.close()
        ref.close()
    run(main(), timeout=60)
    d.stop()


def _closing_server():
    """A TCP listener that accepts and at once closes: a directory refusing our handshake the
    way joinmarket-ng directories do (no 795)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.setblocking(False)
    return srv


@pytest.mark.stack
def test_c3_directory_closing_before_handshake_is_refused_and_logged(tmp_path):
    dproc = start_daemon(tmp_path, "daemon")
    srv = _closing_server()
    closing = srv.getsockname()[1]
    dead = free_port()

    async def accept_and_close():
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(srv)
            conn.close()

    async def main():
        acceptor = asyncio.ensure_future(accept_and_close())
        c = await TestClient("taker").connect(dproc.port)
        cfg = [{"type": "onion", "regtest_count": "1,1", "btcnet": "testnet",
                "directory_nodes": "127.0.0.1:%d,127.0.0.1:%d" % (closing, dead),
                "reconnect_base": 30}]
        r = await c.call("JMInit", bcsource="regtest", network="regtest", chan_configs=cfg,
                         minmakers=1, maker_timeout_sec=20, dust_threshold=27300,
                         blacklist_location="cmtdata/commitmentlist")
        assert r == {"accepted": True}
        await c.wait_for("JMInitProto")
        await c.call("JMStartMC", nick=c.nick)
        states = {}
        for _ in range(100):
            st = (await c.call("EJMChannelStatus"))["status"]
            states = {x["location"]: x for x in st["channels"][0]["directories"]}
            if states["127.0.0.1:%d" % closing]["state"] == "refused" and \
                    states["127.0.0.1:%d" % dead]["state"] == "unreachable":
                break
            await asyncio.sleep(0.1)
        assert st["jminit"] == "accepted" and st["up"] is False and st["client_network"] == "regtest"
        refused = states["127.0.0.1:%d" % closing]
        assert refused["state"] == "refused"
        assert refused["reason"] == "closed the connection before answering our handshake"
        assert states["127.0.0.1:%d" % dead]["reason"] == "connection refused"
        assert c.count("JMUp") == 0
        acceptor.cancel()
        c.close()
    run(main(), timeout=60)
    log = dproc.log()
    assert "closed the connection before answering our handshake" in log
    assert "WARNING" in [l for l in log.splitlines() if "before answering" in l][0]
    # the client's network is named when it connects (not the daemon's default)
    assert "JMInit from a regtest client" in log
    dproc.stop()
    srv.close()


@pytest.mark.stack
def test_refused_jminit_says_why(tmp_path):
    dproc = start_daemon(tmp_path, "daemon")

    async def main():
        c = await TestClient("taker").connect(dproc.port)
        two = [{"type": "onion", "directory_nodes": "127.0.0.1:1", "regtest_count": "1,1"}] * 2
        r = await c.call("JMInit", bcsource="regtest", network="regtest", chan_configs=two,
                         minmakers=1, maker_timeout_sec=20, dust_threshold=27300,
                         blacklist_location="cmtdata/commitmentlist")
        assert r == {"accepted": False}
        st = (await c.call("EJMChannelStatus"))["status"]
        assert st["jminit"] == "refused" and "at most one onion channel" in st["error"]
        # and our plugin's client turns that into the error the user sees
        client = DaemonClient(network="regtest", chan_configs=[
            {"type": "onion", "directory_nodes": "127.0.0.1:1", "regtest_count": "1,1"}])
        client.chan_configs = client.chan_configs * 2          # what a broken caller would send
        try:
            await client.connect("127.0.0.1", dproc.port)
        except DaemonError as exc:
            assert "the daemon refused JMInit: at most one onion channel" in str(exc)
        else:
            raise AssertionError("JMInit accepted")
        finally:
            client.close()
        c.close()
    run(main(), timeout=60)
    dproc.stop()


@pytest.mark.stack
def test_c4_tor_missing_ends_the_wait_at_once_with_one_message(tmp_path):
    """An onion channel over Tor whose SOCKS port has nothing behind it: the plugin's wait for
    the channels ends at once (not at its timeout) with a message naming the port and what to
    install or set."""
    dproc = start_daemon(tmp_path, "daemon")
    socks = free_port()

    async def main():
        client = DaemonClient(network="mainnet", chan_configs=[{
            "type": "onion", "directory_nodes": "a" * 56 + ".onion:5222",
            "socks5_host": "127.0.0.1", "socks5_port": socks}])
        try:
            await client.connect("127.0.0.1", dproc.port)
            await client.wait_up(600)       # ends long before: run() below allows 60 s
        except DaemonError as exc:
            return str(exc)
        finally:
            client.close()
        raise AssertionError("channels came up without Tor")
    msg = run(main(), timeout=60)
    assert f"127.0.0.1:{socks}" in msg and "sudo apt install tor" in msg and "socks5" in msg
    assert "did not come up" not in msg              # the reason itself, not a timeout
    dproc.stop()


@pytest.mark.stack
def test_daemon_without_the_extension_degrades(tmp_path):
    """A daemon that does not know EJMChannelStatus (the reference's command set, plus the link
    authentication) answers it with an AMP error: the client stops asking and still comes up on
    JMUp."""
    cookie_path, cookie = linkauth.write_cookie(str(tmp_path / "d"))
    port = free_port()
    server_id = linkauth.server_address("127.0.0.1", port)
    tasks: set = set()

    async def main():
        def responders(proto):
            def hello(version, client_nonce):
                nonce = linkauth.new_nonce()
                return {"accepted": True, "version": 1, "daemon_nonce": nonce,
                        "daemon_proof": linkauth.proof(cookie, "daemon", client_nonce, nonce,
                                                       server_id)}

            def jminit(**kw):
                async def up():
                    await asyncio.sleep(0.3)
                    await proto.call_remote("JMUp")
                tasks.add(asyncio.ensure_future(up()))     # keep a reference
                return {"accepted": True}
            return {"JMInit": jminit, linkauth.HELLO: hello,
                    linkauth.PROOF: lambda client_proof: {"accepted": True}}
        known = {**COMMANDS, **linkauth.LINK_AUTH_COMMANDS}
        server = await jamp.serve("127.0.0.1", port, responders, commands=known)
        client = DaemonClient(network="regtest", cookie_path=cookie_path, chan_configs=[
            {"type": "irc", "host": "127.0.0.1", "port": 1, "channel": "joinmarket-pit"}])
        await client.connect("127.0.0.1", port)
        assert await client.channel_status() is None
        assert client.status_supported is False
        await client.wait_up(10)
        client.close()
        server.close()
    run(main(), timeout=30)
