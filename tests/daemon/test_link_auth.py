"""The daemon's side of the authenticated local link (issue 12 H5; TESTING.md L2, L3): a client
that cannot prove it knows the cookie gets no answer to any command and is never called; the
cookie file is private, fresh per start and removed at exit; reference clients are served only
with --allow-unauthenticated / ``[daemon] authentication = off``, with warnings; the AMP port is
reachable from another host only when configured."""
import asyncio
import os
import socket
import stat

import pytest

from devstack.daemons import TestClient, run, start_daemon
from jmcore import amp as jamp
from jmcore import linkauth
from jmcore.errors import AMPConnectionLost


async def _raw(port):
    """A client like a reference one: plain AMP, records whatever the daemon calls on it."""
    calls = []

    def recorder(name):
        def respond(**kw):
            calls.append(name)
            return {"accepted": True}
        return respond
    responders = {name: recorder(name) for name, spec in linkauth.LINK_COMMANDS.items()
                  if spec.direction == "daemon->client" and spec.group == "coinjoin"}
    proto = await jamp.connect("127.0.0.1", port, responders, commands=linkauth.LINK_COMMANDS)
    return proto, calls


JMINIT = dict(bcsource="x", network="regtest",
              chan_configs=[{"type": "irc", "host": "127.0.0.1", "port": 1}], minmakers=1,
              maker_timeout_sec=5,
              dust_threshold=27300, blacklist_location="cmtdata/commitmentlist")


async def _unanswered(proto, command, **kw):
    """The command gets no answer at all: the connection is closed without a reply box."""
    with pytest.raises(AMPConnectionLost):
        await asyncio.wait_for(proto.call_remote(command, **kw), 10)


@pytest.mark.stack
def test_l2_client_without_the_cookie_gets_no_answer_to_any_command(tmp_path):
    p = start_daemon(tmp_path, "d")

    async def main():
        # a reference-style client: JMInit first
        proto, calls = await _raw(p.port)
        await _unanswered(proto, "JMInit", **JMINIT)     # returns once the connection is closed
        assert calls == [] and not proto.connected
        # other commands, and an unknown one (which an open daemon answers with an error box)
        for command, kw in (("JMRequestOffers", {}), ("JMStartMC", {"nick": "J5x"}),
                            ("JMShutdown", {})):
            proto, calls = await _raw(p.port)
            await _unanswered(proto, command, **kw)
        proto, _ = await _raw(p.port)
        with pytest.raises(AMPConnectionLost):
            await asyncio.wait_for(proto.call_remote_raw("NoSuchCommand"), 10)
        # the daemon proves itself to anyone, but a client with the wrong cookie is refused ...
        proto, calls = await _raw(p.port)
        wrong = os.urandom(32)
        with pytest.raises(linkauth.LinkAuthError) as e:
            await linkauth.verify_daemon(proto, wrong)
        assert e.value.kind == "bad_proof"
        proto.close()
        real = linkauth.read_cookie(p.extra["cookie"])
        proto, calls = await _raw(p.port)
        cn, dn, server = await linkauth.verify_daemon(proto, real)     # the daemon's proof holds
        forged = linkauth.proof(wrong, "client", cn, dn, server)
        assert (await proto.call_remote(linkauth.PROOF, client_proof=forged)) == {"accepted": False}
        await _unanswered(proto, "JMInit", **JMINIT)
        # ... as is one that replays the daemon's own proof as its own (reflection)
        proto, calls = await _raw(p.port)
        cn = linkauth.new_nonce()
        a = await proto.call_remote(linkauth.HELLO, version=1, client_nonce=cn)
        assert (await proto.call_remote(linkauth.PROOF, client_proof=a["daemon_proof"])) \
            == {"accepted": False}
        # ... and one that skips its proof after the hello
        proto, calls = await _raw(p.port)
        await linkauth.verify_daemon(proto, real)
        await _unanswered(proto, "JMInit", **JMINIT)
        assert calls == []
        # the owner of the cookie is served on the same daemon
        c = await TestClient("owner").connect(p.port)
        assert (await c.call("JMInit", **JMINIT)) == {"accepted": True}
        await c.wait_for("JMInitProto")
        # a second hello on an authenticated connection is refused, nothing else changes
        again = await c.proto.call_remote(linkauth.HELLO, version=1,
                                          client_nonce=linkauth.new_nonce())
        assert again["accepted"] is False
        assert (await c.call("JMRequestOffers")) == {"accepted": True}
        c.close()
    run(main())
    log = p.log()
    assert log.count("before authenticating: not answered") >= 5
    assert "failed to prove it knows the cookie" in log
    assert p.stop() == 0 and "Traceback" not in p.log()


@pytest.mark.stack
def test_l2_cookie_file_is_private_fresh_per_start_and_removed_at_exit(tmp_path):
    p = start_daemon(tmp_path, "d")
    path = p.extra["cookie"]
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
    assert stat.S_IMODE(os.stat(p.extra["datadir"]).st_mode) == 0o700
    first = linkauth.read_cookie(path)
    assert len(first) == 32
    assert p.stop() == 0
    assert not os.path.exists(path)
    p2 = start_daemon(tmp_path, "d")
    assert linkauth.read_cookie(path) != first
    # a second daemon that cannot start (port in use) leaves the running one's cookie alone
    current = linkauth.read_cookie(path)
    with pytest.raises(RuntimeError):
        start_daemon(tmp_path, "d", extra=["--port", str(p2.port)])
    assert linkauth.read_cookie(path) == current
    assert p2.stop() == 0


@pytest.mark.stack
@pytest.mark.parametrize("how", ["flag", "config"])
def test_l2_reference_clients_served_only_when_authentication_is_off(tmp_path, how):
    if how == "flag":
        p = start_daemon(tmp_path, "d", extra=["--allow-unauthenticated"])
    else:
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "jmdaemon.cfg").write_text("[daemon]\nauthentication = off\n")
        p = start_daemon(tmp_path, "d")
    assert "authentication is OFF" in p.log()

    async def main():
        proto, calls = await _raw(p.port)
        assert (await proto.call_remote("JMInit", **JMINIT)) == {"accepted": True}
        for _ in range(50):
            if calls:
                break
            await asyncio.sleep(0.1)
        assert calls == ["JMInitProto"]
        proto.close()
        # our client still authenticates (and checks the daemon's proof)
        c = await TestClient("owner").connect(p.port)
        assert (await c.call("JMRequestOffers")) == {"accepted": True}
        c.close()
    run(main())
    assert "serving unauthenticated client" in p.log()
    assert p.stop() == 0


def test_l2_bad_authentication_setting_is_a_clear_error(tmp_path):
    import subprocess
    import sys
    (tmp_path / "jmdaemon.cfg").write_text("[daemon]\nauthentication = maybe\n")
    r = subprocess.run([sys.executable, "-m", "jmdaemon", "--datadir", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "authentication must be on or off" in r.stderr
    h = subprocess.run([sys.executable, "-m", "jmdaemon", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert "--allow-unauthenticated" in h.stdout and ".cookie" in h.stdout
    assert "EJMLinkAuthHello" in h.stdout


def _non_loopback_ipv4():
    """This host's address towards the network (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def _reachable(ip, port):
    try:
        with socket.create_connection((ip, port), timeout=3):
            return True
    except OSError:
        return False


@pytest.mark.stack
def test_l3_daemon_port_reachable_from_another_host_only_when_configured(tmp_path):
    ip = _non_loopback_ipv4()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address to test from")
    p = start_daemon(tmp_path, "default")
    assert _reachable("127.0.0.1", p.port)
    assert not _reachable(ip, p.port), "the default daemon must listen on loopback only"
    assert "not a loopback address" not in p.log()
    assert p.stop() == 0
    q = start_daemon(tmp_path, "exposed", extra=["--host", "0.0.0.0"])
    assert _reachable(ip, q.port)
    assert "not a loopback address" in q.log()
    assert q.stop() == 0
