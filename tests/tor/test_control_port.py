"""Onion services through Tor's control port with each kind of authentication, and what a user
reads when it fails: a tor with password authentication (HashedControlPassword, no cookie) and
our directory node given the password in its config; the wrong password, and no control port at
all, end the start with one line saying what to set."""
from __future__ import annotations

import subprocess
import sys

import pytest

from devstack.daemons import ROOT, start_tor_directory
from devstack.procs import free_port
from devstack.tor import onion_handshake

pytestmark = [pytest.mark.stack, pytest.mark.tor]


def _config(tmp_path, password):
    path = tmp_path / "jmdaemon.cfg"
    path.write_text(f"[tor]\ntor_control_password = {password}\n")
    return path


def _directory_fails(tmp_path, control_port, cfg=None):
    args = [sys.executable, "-m", "jmdaemon", "--directory-node", "--directory-port", "0",
            "--network", "regtest", "--tor-control", f"127.0.0.1:{control_port}",
            "--hidden-service-dir", str(tmp_path / "hs"), "--datadir", str(tmp_path / "d")]
    if cfg is not None:
        args += ["--config", str(cfg)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=90, cwd=str(ROOT))
    return r.returncode, r.stderr


def test_c6_password_authentication_and_clear_failures(tornet, tmp_path):
    pw = tornet.add_client("pwtor", control_password="s3cret horse")
    d = start_tor_directory(tmp_path, pw.control_port, name="pwdir",
                            extra=("--config", str(_config(tmp_path, "s3cret horse"))))
    try:
        reply, _ = onion_handshake(pw.socks_port, d.extra["location"])
        assert reply["accepted"] is True and reply["nick"] == d.extra["nick"]
    finally:
        d.stop()
    # the same key again after a restart: the directory keeps its address
    d2 = start_tor_directory(tmp_path, pw.control_port, name="pwdir",
                             extra=("--config", str(_config(tmp_path, "s3cret horse"))))
    try:
        assert d2.extra["location"] == d.extra["location"]
    finally:
        d2.stop()
    rc, err = _directory_fails(tmp_path, pw.control_port, _config(tmp_path, "wrong"))
    assert rc == 2 and f"Tor's control port at 127.0.0.1:{pw.control_port} refused us" in err
    assert "tor_control_password" in err and "Traceback" not in err
    rc, err = _directory_fails(tmp_path, pw.control_port)          # no password at all
    assert rc == 2 and "refused us" in err
    dead = free_port()
    rc, err = _directory_fails(tmp_path, dead)
    assert rc == 2 and f"none answers at 127.0.0.1:{dead}" in err and "ControlPort 9051" in err
    pw.stop()


MAKER_SERVICE = r"""
import json, logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
from jmdaemon.tls import import_twisted
import_twisted()
from twisted.internet import defer, protocol, reactor
from jmdaemon.tor.control import publish_onion

async def main():
    listener = reactor.listenTCP(0, protocol.Factory.forProtocol(protocol.Protocol),
                                 interface="127.0.0.1")
    service = await publish_onion(reactor, "127.0.0.1", int(sys.argv[1]), "127.0.0.1",
                                  listener.getHost().port)
    onions = await service.control.command("GETINFO onions/current")
    await service.remove()
    gone = service.control.closed is not None or bool(service.control.transport.disconnecting)
    return {"hostname": service.hostname, "private_key": service.private_key,
            "listed": [line for line in onions.lines if service.service_id in line] != [],
            "closed": gone, "txtorcon": "txtorcon" in sys.modules,
            "cryptography": "cryptography" in sys.modules}

out = {}
def go():
    d = defer.ensureDeferred(main())
    d.addCallbacks(out.update, lambda f: out.update(failure=f.getTraceback()))
    d.addBoth(lambda _: reactor.stop())
reactor.callWhenRunning(go)
reactor.run()
print(json.dumps(out))
"""


def test_c6_maker_service_with_safecookie_on_a_real_tor(tornet, tmp_path):
    """Our control client on a real tor with cookie authentication (tor offers SAFECOOKIE): a
    maker's ephemeral service (DiscardPK: tor hands back no key) is published once its first
    descriptor is uploaded, listed by tor on our connection, and removed with DEL_ONION."""
    import json
    client = tornet.add_client("c7tor")
    try:
        r = subprocess.run([sys.executable, "-c", MAKER_SERVICE, str(client.control_port)],
                           capture_output=True, text=True, timeout=120, cwd=str(ROOT))
        assert r.returncode == 0, r.stderr[-3000:]
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert "failure" not in out, out["failure"]
        assert out["hostname"].endswith(".onion") and len(out["hostname"]) == 62
        assert out["private_key"] is None and out["listed"] is True and out["closed"] is True
        assert out["txtorcon"] is False and out["cryptography"] is False
        assert "authenticated (SAFECOOKIE)" in r.stderr
        assert "onion service %s removed" % out["hostname"] in r.stderr
    finally:
        client.stop()
