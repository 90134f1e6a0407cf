"""IRC over TLS: our own ngircd with an [SSL] port and a self-signed certificate; two daemons hold
the full conversation over it (the Ref client does not verify IRC certificates either)."""
import subprocess

import pytest

from devstack.daemons import TestClient, run, start_daemon
from devstack.ircd import start_ircd

from .conversation import full_conversation
from .test_conversation_irc import irc_config


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
    try:
        ircd = start_ircd(d, tls_cert=d / "cert.pem", tls_key=d / "key.pem")
    except Exception as exc:
        pytest.skip("ngircd TLS did not start: %s" % exc)

    class S:
        host = "127.0.0.1"
        port = ircd.tls_port
    yield S
    ircd.stop()


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
