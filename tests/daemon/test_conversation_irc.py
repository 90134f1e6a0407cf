"""Two clients, each with its own daemon process, hold a complete coinjoin conversation over a
real IRC server (ngircd)."""
import pathlib

import pytest

from devstack.daemons import TestClient, run, start_daemon
from devstack.ircd import irc_config

from .conversation import full_conversation

pytestmark = pytest.mark.stack          # starts jmdaemon processes on 127.0.0.1


@pytest.fixture
def two_daemons(tmp_path):
    t = start_daemon(tmp_path, "taker")
    m = start_daemon(tmp_path, "maker")
    yield t, m
    for p in (t, m):
        rc = p.stop()
        assert rc == 0, p.log()[-3000:]
        assert "Traceback" not in p.log(), p.log()[-5000:]


def test_irc_full_conversation_two_daemons(ircd, two_daemons, tmp_path):
    tproc, mproc = two_daemons

    async def main():
        taker = await TestClient("taker").connect(tproc.port)
        maker = await TestClient("maker").connect(mproc.port)
        try:
            seen = await full_conversation(taker, maker, irc_config(ircd), irc_config(ircd))
            hostid = seen["taker_verify"][0]["hostid"]
            assert hostid == "%s%d" % (ircd.host, ircd.port)   # ngircd sends no NETWORK=
        finally:
            taker.close()
            maker.close()
    run(main())
    # the used commitment is persisted by the maker's daemon (canonical lower-case hex)
    from .conversation import COMMITMENT_HEX
    bl = pathlib.Path(tmp_path / "maker" / "cmtdata" / "commitmentlist").read_text().split()
    assert COMMITMENT_HEX in bl
    # even at DEBUG level the daemons never log plaintext of encrypted commands or txs
    import base64

    from .conversation import REVELATION, SIGNED_TX, UNSIGNED_TX
    for p in two_daemons:
        text = p.log()
        for secret in (REVELATION, base64.b64encode(UNSIGNED_TX).decode()[:60],
                       base64.b64encode(SIGNED_TX).decode()[:60], UNSIGNED_TX.hex()[:60],
                       "bcrt1qmakerchange"):
            assert secret not in text
