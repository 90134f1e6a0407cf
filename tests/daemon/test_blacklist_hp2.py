"""Commitment blacklist and !hp2 (docs/protocol.md §7.5, §7.6, §13; docs/testing.md T5): the maker
persists C when it sends !ioauth and asks another maker to publish it as a public !hp2; other
makers blacklist published commitments; a reused commitment is refused in any hex case. Also: a
maker that leaves is dropped from the taker's book (peerlist ;D)."""
import pathlib

import pytest

from devstack.daemons import TestClient, nick_key, run, start_daemon, start_directory
from devstack.procs import wait_until
from jmdaemon.blacklist import CommitmentBlacklist, canonical_commitment

from .conversation import COMMITMENT_HEX, OFFERS, REVELATION, has_offer, onion_config, wait_book, wait_offers


def test_t5_blacklist_canonical_and_persisted(tmp_path):
    path = tmp_path / "cmtdata" / "commitmentlist"
    bl = CommitmentBlacklist(str(path))
    upper = COMMITMENT_HEX.upper()
    assert bl.add(upper) and bl.contains(COMMITMENT_HEX) and bl.contains(upper)
    assert not bl.add("zz" * 32) and not bl.add(COMMITMENT_HEX[:-2]) and not bl.add("P" + COMMITMENT_HEX)
    assert path.read_text() == COMMITMENT_HEX + "\n"
    # a Ref-written file (no trailing newline, mixed case) is read canonically and appended safely
    path.write_text("AB" * 32 + "\n" + "cd" * 32)
    bl2 = CommitmentBlacklist(str(path))
    assert bl2.contains("ab" * 32) and bl2.contains("CD" * 32)
    bl2.add("ef" * 32)
    assert path.read_text().split() == ["AB" * 32, "cd" * 32, "ef" * 32]
    assert canonical_commitment(upper) == COMMITMENT_HEX


@pytest.mark.stack
def test_hp2_relay_and_blacklisting_across_makers(tmp_path):
    d = start_directory(tmp_path)
    procs = {n: start_daemon(tmp_path, n) for n in ("taker", "makerA", "makerB", "makerC")}

    async def main():
        cl = {n: await TestClient(n).connect(p.port) for n, p in procs.items()}
        # A first, so that it sees the public offers of B and C (its "orderbook view")
        for n in ("makerA", "makerB", "makerC"):
            await cl[n].init(onion_config(d))
            await cl[n].call("JMSetup", role="MAKER", initdata=OFFERS, use_fidelity_bond=False)
            await cl[n].wait_for("JMSetupDone")
        taker, a = cl["taker"], cl["makerA"]
        for n in ("makerB", "makerC"):              # A's daemon knows B and C (it relays !hp2)
            await wait_offers(a, cl[n].nick, 2)
        await taker.init(onion_config(d))
        await taker.call("JMSetup", role="TAKER", initdata=None, use_fidelity_bond=False)
        book, _ = await wait_offers(taker, a.nick, 2)
        for n in ("makerB", "makerC"):
            await wait_offers(taker, cl[n].nick, 2)
        offer = [o for o in book if o["counterparty"] == a.nick][0]
        await taker.call("JMFill", amount=5_000_000, commitment="P" + COMMITMENT_HEX,
                         revelation=REVELATION, filled_offers={a.nick: offer})
        assert (await taker.wait_for("JMFillResponse"))["success"] is True
        # A asked B or C (privately, signed) to publish C; the other makers then blacklist it
        reqs = await wait_until(lambda: [r for r in a.sign_requests if r["cmd"] == "hp2"], 10,
                                "maker A to ask another maker to publish the commitment")
        relayer = reqs[0]["nick"]
        assert reqs[0]["msg"] == COMMITMENT_HEX
        assert relayer in (cl["makerB"].nick, cl["makerC"].nick)
        other = "makerC" if relayer == cl["makerB"].nick else "makerB"
        relayer_name = "makerB" if other == "makerC" else "makerC"
        files = {n: pathlib.Path(tmp_path / n / "cmtdata" / "commitmentlist") for n in cl}
        await wait_until(lambda: files[other].exists() and COMMITMENT_HEX in files[other].read_text(),
                         10, "the third maker to blacklist the published commitment")
        assert COMMITMENT_HEX in files["makerA"].read_text()    # persisted at !ioauth
        # barrier: the relayer announces a new offer after its public !hp2; once the taker's
        # book has it, the taker's daemon has handled the !hp2 too -- and ignored it
        extra = dict(OFFERS[0], oid=2)
        assert (await cl[relayer_name].call("JMAnnounceOffers", to_announce=[extra], to_cancel=[],
                                            offerlist=OFFERS + [extra])) == {"accepted": True}
        await wait_book(taker, has_offer(relayer, 2), "the relayer's new offer")
        assert not files["taker"].exists()                      # takers ignore !hp2
        # the other maker now refuses the same commitment, even in upper case
        o2 = [o for o in book if o["counterparty"] == cl[other].nick][0]
        await taker.call("JMShutdown")
        taker.key = nick_key()          # a new run has a new nick, as Ref's client does
        taker.nick = taker.key.nick
        await taker.init(onion_config(d), maker_timeout_sec=3)
        await taker.call("JMSetup", role="TAKER", initdata=None, use_fidelity_bond=False)
        await wait_offers(taker, cl[other].nick, 2)
        await taker.call("JMFill", amount=5_000_000, commitment="P" + COMMITMENT_HEX.upper(),
                         revelation=REVELATION, filled_offers={cl[other].nick: o2})
        fr = await taker.wait_for("JMFillResponse", count=2)
        assert fr["success"] is False and cl[other].count("JMAuthReceived") == 0
        # a maker leaving is dropped from the taker's book (directory sends nick;loc;D)
        leaver = cl["makerC"].nick
        assert procs["makerC"].stop() == 0
        await wait_book(taker, lambda book: not any(o["counterparty"] == leaver for o in book),
                        "the leaver's offers to be dropped")
        for c in cl.values():
            c.close()
    run(main())
    for p in list(procs.values()) + [d]:
        assert p.stop() == 0
        assert "Traceback" not in p.log()
    assert any("Commitment is blacklisted" in p.log() for p in procs.values())
