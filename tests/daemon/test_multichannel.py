"""Both channels at once (IRC + onion): public messages go out on both, offers arrive on both,
and every private message with one counterparty stays on one pinned channel, signed with that
channel's hostid (MessageChannelCollection, docs/protocol.md §1, §6.2)."""
import pytest

from devstack.daemons import TestClient, run, start_daemon, start_directory
from devstack.ircd import irc_config
from devstack.procs import wait_until

from .conversation import full_conversation, onion_config

pytestmark = pytest.mark.stack          # starts jmdaemon processes on 127.0.0.1


def test_irc_and_onion_together_with_channel_pinning(ircd, tmp_path):
    d = start_directory(tmp_path)
    tproc, mproc = start_daemon(tmp_path, "taker"), start_daemon(tmp_path, "maker")
    irc_hostid = "%s%d" % (ircd.host, ircd.port)

    async def main():
        taker = await TestClient("taker").connect(tproc.port)
        maker = await TestClient("maker").connect(mproc.port)
        async def offers_on_both_channels():
            await wait_until(lambda: {v["hostid"] for v in taker.verify_requests
                                      if v["nick"] == maker.nick} == {irc_hostid, "onion-network"},
                             10, "the maker's offers on both channels")
        await full_conversation(taker, maker, irc_config(ircd) + onion_config(d),
                                irc_config(ircd) + onion_config(d, serving=True),
                                before_fill=offers_on_both_channels)
        taker.close()
        maker.close()
        return taker, maker
    taker, maker = run(main())
    # offers were answered on both channels (the maker replies where the taker asked)
    offer_hostids = {r["hostid"] for r in maker.sign_requests if r["cmd"] == "sw0reloffer"}
    assert offer_hostids == {irc_hostid, "onion-network"}
    # from !fill on, the conversation used one channel per direction, consistently
    after_fill = [r["hostid"] for r in taker.sign_requests
                  if r["cmd"] in ("fill", "auth", "tx", "push")]
    assert len(set(after_fill)) == 1, after_fill
    maker_session = [r["hostid"] for r in maker.sign_requests
                     if r["cmd"] in ("pubkey", "ioauth", "sig")]
    assert len(set(maker_session)) == 1, maker_session
    for p in (tproc, mproc, d):
        assert p.stop() == 0 and "Traceback" not in p.log()
