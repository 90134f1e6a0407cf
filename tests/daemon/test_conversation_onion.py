"""Two clients, each with its own daemon, hold a complete conversation over the onion channel in
test mode (plain TCP on 127.0.0.1) through a directory node of ours; the taker then opens a
direct link to the serving maker (learned from the directory's peerlist)."""
import pytest

from devstack.daemons import TestClient, nick_key, run, start_daemon, start_directory

from .conversation import full_conversation, onion_config

pytestmark = pytest.mark.stack          # starts jmdaemon processes on 127.0.0.1


async def next_schedule_entry(taker, maker, chan):
    """docs/protocol.md §10.3: the next coinjoin of a schedule re-sends JMInit with the same channels
    (kept, so JMUp comes at once), then JMStartMC/JMSetup/JMFill run again from state 0."""
    from .conversation import COMMITMENT_HEX, REVELATION, wait_offers
    n_up = taker.count("JMUp")
    assert (await taker.call("JMFill", amount=1, commitment="Px", revelation="r",
                             filled_offers={maker.nick: {"oid": 0}})) == {"accepted": False}
    taker.key = nick_key()          # a new run has a new nick, as Ref's client does
    taker.nick = taker.key.nick
    await taker.init(chan, maker_timeout_sec=4)
    assert taker.count("JMUp") == n_up + 1
    assert (await taker.call("JMSetup", role="TAKER", initdata=None, use_fidelity_bond=False)) \
        == {"accepted": True}
    book, _ = await wait_offers(taker, maker.nick, 2)
    offer = [o for o in book if o["counterparty"] == maker.nick][0]
    # the maker refuses a reused commitment (now blacklisted), in any hex case
    r = await taker.call("JMFill", amount=5_000_000, commitment="P" + COMMITMENT_HEX.upper(),
                         revelation=REVELATION, filled_offers={maker.nick: offer})
    assert r == {"accepted": True}
    fr = await taker.wait_for("JMFillResponse", count=2, timeout=40)
    assert fr["success"] is False and fr["ioauth_data"] == [maker.nick]
    assert maker.count("JMAuthReceived") == 1


@pytest.fixture
def onion_stack(tmp_path):
    d = start_directory(tmp_path, "directory", network="regtest")
    t = start_daemon(tmp_path, "taker")
    m = start_daemon(tmp_path, "maker")
    yield d, t, m
    for p in (t, m, d):
        rc = p.stop()
        assert rc == 0, p.log()[-3000:]
        assert "Traceback" not in p.log(), p.log()[-5000:]


def test_onion_full_conversation_via_directory(onion_stack):
    d, tproc, mproc = onion_stack

    async def main():
        taker = await TestClient("taker").connect(tproc.port)
        maker = await TestClient("maker").connect(mproc.port)
        try:
            await full_conversation(taker, maker, onion_config(d), onion_config(d, serving=True),
                                    hostid_check="onion-network")
            await next_schedule_entry(taker, maker, onion_config(d))
        finally:
            taker.close()
            maker.close()
    run(main())
    # the directory relayed the first private messages; later ones went on the direct link
    import re
    assert d.stop() == 0
    stats = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", d.log().split("directory stats:")[-1]))
    assert stats["relayed_priv"] > 0 and stats["relayed_pub"] > 0, d.log()
    assert "direct link with" in tproc.log()
