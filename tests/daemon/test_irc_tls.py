"""IRC over TLS: our own ngircd with an [SSL] port and a self-signed certificate; two daemons hold
the full conversation over it (the Ref client does not verify IRC certificates either)."""
import subprocess

import pytest

from tests.stack.procs import free_port, port_open, terminate, wait_for

from .conversation import full_conversation
from .helpers import TestClient, run, start_daemon
from .test_conversation_irc import irc_config

CONF = """[Global]
    Name = irc.tls.local
    Info = tls test
    Listen = 127.0.0.1
    Ports = {plain}
    PidFile = {d}/ngircd.pid
    MotdPhrase = tls
[Limits]
    MaxConnections = 0
    MaxConnectionsIP = 0
    MaxNickLength = 30
[Options]
    PAM = no
    Ident = no
    DNS = no
[SSL]
    CertFile = {d}/cert.pem
    KeyFile = {d}/key.pem
    Ports = {tls}
"""


@pytest.fixture
def tls_ircd(tmp_path):
    d = tmp_path / "ircd"
    d.mkdir()
    d.chmod(0o755)
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                        "/CN=irc.tls.local", "-days", "1", "-keyout", str(d / "key.pem"),
                        "-out", str(d / "cert.pem")], capture_output=True)
    if r.returncode != 0:
        pytest.skip("openssl CLI not available")
    for f in ("key.pem", "cert.pem"):
        (d / f).chmod(0o644)
    plain, tls = free_port(), free_port()
    (d / "ngircd.conf").write_text(CONF.format(plain=plain, tls=tls, d=d))
    log = d / "ngircd.log"
    proc = subprocess.Popen(["/usr/sbin/ngircd", "--nodaemon", "--config", str(d / "ngircd.conf")],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: port_open(tls), 20, "ngircd TLS port", proc=proc, log=log)
    except Exception as exc:
        terminate(proc)
        pytest.skip("ngircd TLS did not start: %s" % exc)

    class S:
        host = "127.0.0.1"
        port = tls
    yield S
    terminate(proc)


def test_irc_over_tls_full_conversation(tls_ircd, tmp_path):
    tproc, mproc = start_daemon(tmp_path, "taker"), start_daemon(tmp_path, "maker")
    cfg = irc_config(tls_ircd)
    cfg[0]["usessl"] = "true"

    async def main():
        taker = await TestClient("taker").connect(tproc.port)
        maker = await TestClient("maker").connect(mproc.port)
        await full_conversation(taker, maker, cfg, cfg)
        taker.close()
        maker.close()
    run(main())
    assert "(TLS)" in tproc.log()
    for p in (tproc, mproc):
        assert p.stop() == 0 and "Traceback" not in p.log()
