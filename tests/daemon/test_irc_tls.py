"""IRC over TLS: our own ngircd with an [SSL] port and a self-signed certificate; two daemons hold
the full conversation over it (the Ref client does not verify IRC certificates either), on the
standard library's ssl: neither maps cryptography's library. The ``tls_ircd`` fixture is in
tests/conftest.py (the binary's tests use it too)."""
import pytest

from devstack.daemons import TestClient, run, start_daemon
from devstack.ircd import irc_config

from .conversation import full_conversation
from .test_lean import TLS_LIBS, mapped

pytestmark = pytest.mark.stack          # starts jmdaemon processes on 127.0.0.1


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
    assert mapped(tproc.proc.pid, TLS_LIBS) == [] and mapped(mproc.proc.pid, TLS_LIBS) == []
    for p in (tproc, mproc):
        assert p.stop() == 0 and "Traceback" not in p.log()
