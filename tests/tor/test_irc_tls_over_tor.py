"""IRC over TLS inside a Tor stream, all of it the daemon's own code on a real (private) Tor
network: our ngircd's TLS port is published as an onion service through a tor client's control
port (jmdaemon.tor.control, cookie authentication), and a daemon joins its channel through
another tor client's SOCKS port with TLS inside the stream (jmdaemon.tls over
jmdaemon.tor.socks) — the path of an IRC server reached over Tor with ``usessl``."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from devstack.daemons import ROOT, join_once, start_daemon
from devstack.ircd import irc_config
from tests.daemon.test_lean import TLS_LIBS, mapped

pytestmark = [pytest.mark.stack, pytest.mark.tor]

PUBLISH = r"""
import sys
from jmdaemon.tls import import_twisted
import_twisted()
from twisted.internet import defer, reactor
from jmdaemon.tor.control import publish_onion

async def main():
    service = await publish_onion(reactor, "127.0.0.1", int(sys.argv[1]), "127.0.0.1",
                                  int(sys.argv[2]), virtual_port=6697)
    print("published", service.hostname, flush=True)

def go():
    defer.ensureDeferred(main()).addErrback(lambda f: (print("failed", f.getErrorMessage(),
                                                             flush=True), reactor.stop()))
reactor.callWhenRunning(go)
reactor.run()
"""


def test_c10_irc_over_tls_inside_a_tor_stream(tornet, tls_ircd, tmp_path):
    server_tor = tornet.add_client("irconion")
    client_tor = tornet.add_client("ircclient")
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISH, str(server_tor.control_port),
                                  str(tls_ircd.port)], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True, cwd=str(ROOT))
    p = None
    try:
        assert publisher.stdout is not None
        line = publisher.stdout.readline()
        m = re.match(r"published ([a-z2-7]{56}\.onion)$", line.strip())
        assert m, line
        p = start_daemon(tmp_path, "tor-tls")
        cfg = irc_config(tls_ircd, host=m.group(1), port=6697, usessl="true", socks5="true",
                         socks5_host="127.0.0.1", socks5_port=client_tor.socks_port)
        join_once(p.port, cfg, timeout=120)          # JMUp: joined over TLS inside Tor
        log = p.log()
        assert "(TLS) via SOCKS5" in log
        assert mapped(p.proc.pid, TLS_LIBS) == []
        assert p.stop() == 0 and "Traceback" not in p.log()
        p = None
    finally:
        if p is not None:
            p.stop()
        publisher.terminate()
        publisher.wait(15)
        client_tor.stop()
        server_tor.stop()
