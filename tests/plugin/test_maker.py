"""The Electrum maker (electrum_joinmarket.maker.maker) on the real regtest stack: a password-protected
Electrum maker wallet behind its own jmdaemon, a test taker (real wallet, real PoDLE, real nick
key) behind another jmdaemon, both on ngircd.  Whole coinjoin with balances to the satoshi;
malicious takers T2–T8 never get a signature (docs/testing.md); reservations released; offers
re-announced after the coinjoin."""
from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from devstack.daemons import start_daemon
from devstack.ircd import irc_config
from devstack.procs import wait_until
from devstack.wallets import SignSpy, fund_wallet, new_wallet
from electrum_joinmarket.maker.maker import COMMITMENTS_KEY, SPARE_ADDRESSES_KEY, MakerSettings
from electrum_joinmarket.protocol.podle import CURVE_ORDER, PoDLE
from electrum_joinmarket.tx import taker_tx as tb

from .maker_harness import TestTaker, out, start_maker, with_outputs

pytestmark = pytest.mark.stack

AMOUNT = 5_000_000
SETTINGS = MakerSettings(ordertype="sw0reloffer", cjfee_r="0.0002", txfee=100, minsize=100_000,
                         taker_utxo_age=1, poll_interval=0.5, session_timeout=600)
REAL_CJFEE = 1000                      # 0.0002 * 5 000 000
MAKER_PW = "maker pw"
MAKER_FUND = [20_000_000, 30_000_000]


class World:
    pass


@pytest.fixture(scope="module")
def world(electrum_node, bitcoind, ircd, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("maker")
    w = World()
    w.node, w.bitcoind = electrum_node, bitcoind
    chan = irc_config(ircd)
    w.maker_wallet = new_wallet(electrum_node, name="maker-yg", password=MAKER_PW)
    w.taker_wallet = new_wallet(electrum_node, name="maker-test-taker")
    w.maker_coins = fund_wallet(electrum_node, bitcoind, w.maker_wallet, MAKER_FUND)
    tcoins = fund_wallet(electrum_node, bitcoind, w.taker_wallet,
                         [8_000_000, 8_000_000, 3_000_000, 2_000_000, 1_500_000, 1_400_000,
                          1_300_000, 1_200_000, 500_000])
    podle_coins, w.small_coin = tcoins[2:-1], tcoins[-1]
    w.mdaemon = start_daemon(tmp, "maker")
    w.tdaemon = start_daemon(tmp, "taker")
    w.maker, w.spy = electrum_node.run(
        start_maker(w.maker_wallet, w.mdaemon.port, chan, SETTINGS, password=MAKER_PW),
        timeout=180)
    w.taker = TestTaker(electrum_node, w.taker_wallet, None, w.tdaemon.port, chan, podle_coins)
    electrum_node.run(w.taker.connect())
    w.run = lambda coro, timeout=180: electrum_node.run(coro, timeout=timeout)
    yield w
    w.maker.stop()
    w.taker.close()
    for p in (w.mdaemon, w.tdaemon):
        p.stop()
        assert "Traceback" not in p.log(), p.log()[-4000:]
    for wallet in (w.maker_wallet, w.taker_wallet):
        electrum_node.close_wallet(wallet)


@pytest.fixture
def sign_spy(world, monkeypatch):
    """Every call to the maker wallet's sign_transaction."""
    return SignSpy(world.maker_wallet, monkeypatch).calls


def offer_dict(world):
    return dict(world.maker.announced[0])


def refusals_since(world, n):
    return list(world.maker.refusals)[n:]


async def wait_refusal(world, n_before, stage, timeout=30):
    await wait_until(lambda: [r for r in refusals_since(world, n_before) if r.stage == stage],
                     timeout, f"a maker refusal at {stage}")
    return [r for r in refusals_since(world, n_before) if r.stage == stage]


async def round_to_ioauth(world, podle=None, timeout=20):
    t = world.taker
    await t.new_round(maker_timeout_sec=timeout)
    await t.orderbook(world.maker.nick)      # barrier: our daemon knows the maker (and its channel)
    fill = await t.fill(world.maker.nick, offer_dict(world), AMOUNT, podle or t.podle())
    return await t.wait_ioauth(fill, world.maker.nick, timeout=timeout + 30)


def taker_coins(world):
    """One confirmed 8 000 000 coin of the taker (the honest coinjoin spends the first)."""
    coins = [c for c in world.taker_wallet.get_spendable_coins(confirmed_only=True)
             if c.value_sats() == 8_000_000]
    return sorted(coins, key=lambda c: c.prevout.to_str())[:1]


def assert_clean(world):
    st = world.maker.status()
    assert st["sessions"] == [] and st["reserved_coins"] == []


# ------------------------------------------------------------------------------------------
# an honest taker
# ------------------------------------------------------------------------------------------

def test_honest_taker_coinjoin_to_the_satoshi_and_reannounce(world, sign_spy, caplog):
    """!ioauth: btc_sig verifies (verify_ioauth M5) over the maker's NaCl key, every utxo is a
    confirmed coin of the maker wallet, both addresses fresh maker addresses; the commitment is
    recorded before the answer. !tx → one valid !sig per input; a second !tx in the signed
    session gets nothing (T8). The taker asks the maker to !push; the coinjoin confirms and the
    maker's balance changes by exactly real_cjfee − txfee; history and status record it; the
    offer is re-announced with the new maxsize and the taker's orderbook shows it."""
    w, m, t = world, world.maker, world.taker
    caplog.set_level(logging.INFO)
    before = w.maker_wallet.get_balance()
    assert before == (sum(MAKER_FUND), 0, 0)
    assert m.announced == [{"oid": 0, "ordertype": "sw0reloffer", "minsize": 750_000,
                            "maxsize": sum(MAKER_FUND) - 27_300, "txfee": 100,
                            "cjfee": "0.0002"}]

    async def stage1():
        await t.new_round()
        book = await t.orderbook(m.nick)
        assert book[0]["maxsize"] == sum(MAKER_FUND) - 27_300 and book[0]["txfee"] == 100
        podle = t.podle()
        fill = await t.fill(m.nick, offer_dict(w), AMOUNT, podle)
        return await t.wait_ioauth(fill, m.nick)
    fill = w.run(stage1())
    io = fill.ioauth
    maker_ops = {c.prevout.to_str() for c in w.maker_wallet.get_utxos()}
    assert set(io.outpoints) <= maker_ops and io.outpoints == (w.maker_coins[0],)  # 20M coin
    assert all(u.confirmations >= 1 and u.unspent for u in io.utxos)
    for addr in (io.cj_addr, io.change_addr):
        assert w.maker_wallet.is_mine(addr) and not w.maker_wallet.adb.is_used(addr)
        assert w.maker_wallet.is_address_reserved(addr)
    assert io.change == 20_000_000 - AMOUNT - 100 + REAL_CJFEE
    assert fill.podle.commitment_hex in w.maker_wallet.db.get_plugin_storage()[
        "joinmarket"][COMMITMENTS_KEY]
    st = m.status()
    assert [s["nick"] for s in st["sessions"]] == [t.nick]
    assert st["reserved_coins"] == [w.maker_coins[0]]

    async def stage2():
        plan, tx = await t.build(fill, taker_coins(w), m.nick)
        n0 = len(t.sigs())
        await t.send_tx(m.nick, tx)
        sigs = await t.wait_sigs(n0, len(io.utxos))
        for s in sigs:
            tb.verify_and_add_maker_sig(tx, s, io.utxos)
        # the same !tx again: the session is already signed -> nothing more
        n_ref = len(m.refusals)
        await t.send_tx(m.nick, tx)
        r = await wait_refusal(w, n_ref, "tx")
        assert r[0].case == "T8"
        # the refusal is the maker's last word on that !tx: it never asked its daemon to send
        # a !sig (JMTXSigs), which is the only way a !sig reaches the taker
        assert w.spy.count("JMTXSigs") == 1
        assert len(t.sigs()) == n0 + len(io.utxos)
        tb.sign_our_inputs(w.taker_wallet, tx, None, plan)
        assert tx.is_complete()
        r = await t.client.call("JMPushTx", nick=m.nick, tx=bytes.fromhex(tx.serialize()))
        assert r == {"accepted": True}
        await wait_until(lambda: m.broadcasts == 1, 30, "the maker's broadcast")
        return plan, tx
    plan, tx = w.run(stage2())
    assert w.spy.count("JMTXSigs") == 1 and len(sign_spy) == 1
    txid = tx.txid()
    # the maker logs the coinjoin's real txid when it signs (it logged "txid None" before)
    signed = [r.getMessage() for r in caplog.records if "maker: signed" in r.getMessage()]
    assert signed == [f"maker: signed 1 input(s) of {t.nick}'s coinjoin (txid {txid})"], signed
    w.node.wait_tx(w.maker_wallet, txid, confirmations=0)
    n_ann = m.announcements
    w.bitcoind.mine(1)
    w.node.wait_tx(w.maker_wallet, txid, confirmations=1)
    w.node.wait_tx(w.taker_wallet, txid, confirmations=1)
    after = w.maker_wallet.get_balance()
    assert after == (sum(MAKER_FUND) + REAL_CJFEE - 100, 0, 0)
    assert after[0] - before[0] == REAL_CJFEE - 100 == 900

    # the coinjoin output went to depth 1; the offer is sized by the richer depth 0 (the untouched
    # 30M coin + the change), as Ref's yield generator offers one mixdepth
    new_max = sum(MAKER_FUND) + 900 - AMOUNT - 27_300
    assert m.depth_balances() == {0: sum(MAKER_FUND) + 900 - AMOUNT, 1: AMOUNT, 2: 0, 3: 0, 4: 0}
    w.run(wait_until(lambda: m.announced and m.announced[0]["maxsize"] == new_max, 30,
                     "re-announced offer"))
    assert m.announcements >= n_ann + 1 and w.spy.count("JMAnnounceOffers") == m.announcements
    w.run(wait_until(lambda: m.history() and m.history()[-1]["confirmed"], 30, "history"))
    rec = m.history()[-1]
    assert rec["txid"] == txid and rec["cj_amount"] == AMOUNT and rec["earned"] == 900
    assert rec["cjfee"] == REAL_CJFEE and rec["txfee"] == 100
    st = m.status()
    assert st["earned_total"] == 900 and st["coinjoins"] == 1 and st["running"]
    assert st["offers"][0]["maxsize"] == new_max
    assert_clean(w)
    # the taker sees the new offer (public re-announcement)
    book = w.run(t.orderbook(m.nick, lambda o: o["maxsize"] == new_max))
    assert any(o["maxsize"] == new_max for o in book)
    raw = w.bitcoind.rpc("getrawtransaction", txid, True)
    print(f"\nMAKER COINJOIN txid={txid} maker_before={before[0]} maker_after={after[0]} "
          f"delta={after[0] - before[0]} real_cjfee={REAL_CJFEE} txfee=100 "
          f"miner_fee={plan.amounts.miner_fee} confirmations={raw['confirmations']}")


# ------------------------------------------------------------------------------------------
# malicious !tx (T2, T3, T4)
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["T2", "T3", "T4"])
def test_malicious_tx_never_signed(world, sign_spy, case):
    """T2 our coinjoin output 1 sat short; T3 our change output omitted; T4 the tx also spends
    a maker coin that was not offered. The maker refuses with that case id, sends no
    JMTXSigs, its wallet is never asked to sign, the taker gets no !sig, and the session's
    coins are released."""
    w, m, t = world, world.maker, world.taker
    fill = w.run(round_to_ioauth(w))
    io = fill.ioauth
    n_sigs, n_calls, n_ref = len(t.sigs()), w.spy.count("JMTXSigs"), len(m.refusals)

    async def attack():
        plan, tx = await t.build(fill, taker_coins(w), m.nick)
        if case == "T2":
            bad = with_outputs(tx, lambda outs: [o if o.address != io.cj_addr
                                                 else out(o.address, o.value - 1) for o in outs])
        elif case == "T3":
            bad = with_outputs(tx, lambda outs: [o for o in outs if o.address != io.change_addr])
        else:
            from electrum.transaction import PartialTransaction
            extra = [c for c in w.maker_wallet.get_utxos()
                     if c.prevout.to_str() not in io.outpoints]
            assert extra
            bad = PartialTransaction.from_io(list(tx.inputs()) + extra[:1], list(tx.outputs()),
                                             locktime=tx.locktime, version=2, BIP69_sort=False)
        await t.send_tx(m.nick, bad)
        # barrier: the maker's refusal ends its handling of this !tx (a maker that signs records
        # no refusal, and this wait fails); its wallet and daemon were asked nothing before it
        return await wait_refusal(w, n_ref, "tx")
    refused = w.run(attack())
    assert [r.case for r in refused] == [case]
    assert len(t.sigs()) == n_sigs and w.spy.count("JMTXSigs") == n_calls
    assert sign_spy == []
    assert_clean(w)
    # the refused commitment stays used (never forgotten)
    assert m.commitment_used(fill.podle.commitment_hex)


# ------------------------------------------------------------------------------------------
# refused !auth: T5, T6, T7 (nothing revealed)
# ------------------------------------------------------------------------------------------

async def fill_refused(world, podle, *, commitment=None, revelation=None, timeout=120,
                       daemon_refusal=None):
    """A !fill/!auth the maker must refuse: no JMIOAuth, the taker's fill fails — at once, on
    the maker's !error (EJMRefuse), not at the taker daemon's ``timeout``. With
    ``daemon_refusal``, the maker's daemon must log that line for this !fill (it refused before
    the client saw anything): the failed fill then cannot be a message that never arrived."""
    w, m, t = world, world.maker, world.taker
    n_io = w.spy.count("JMIOAuth")
    n_fail = sum(1 for n, kw in t.client.events if n == "JMFillResponse")
    await t.new_round(maker_timeout_sec=timeout)
    await t.orderbook(m.nick)                # barrier: our daemon knows the maker (and its channel)
    mark = w.mdaemon.log_mark()
    await t.fill(m.nick, offer_dict(w), AMOUNT, podle, commitment=commitment,
                 revelation=revelation)
    if daemon_refusal is not None:
        await w.mdaemon.wait_log(daemon_refusal, since=mark)
    ev = await t.client.wait_for("JMFillResponse", timeout=30, count=n_fail + 1)
    assert ev["success"] is False and ev["ioauth_data"] == [m.nick]
    assert w.spy.count("JMIOAuth") == n_io
    assert_clean(w)


def test_t5_reused_commitment_refused_any_hex_case(world):
    """A commitment already answered is refused again: by the maker daemon's blacklist (same
    and upper-case hex), and by the maker wallet's own record when the daemon does not know it
    (e.g. another daemon, lost blacklist) — also sent in upper case."""
    w, m, t = world, world.maker, world.taker
    fill = w.run(round_to_ioauth(w))
    used = fill.podle
    assert m.commitment_used(used.commitment_hex.upper())
    m._drop(t.nick, "taker abandoned")
    n_ref = len(m.refusals)
    w.run(fill_refused(w, used, daemon_refusal="is blacklisted"))
    w.run(fill_refused(w, used, commitment="P" + used.commitment_hex.upper(),
                       daemon_refusal="is blacklisted"))
    # the daemon blacklist stopped these before the client: no new client refusal
    assert refusals_since(w, n_ref) == []
    # the wallet's record alone: a commitment the daemon never saw
    fresh = t.podle()
    m._mark_commitment(fresh.commitment_hex.upper())
    stored = w.maker_wallet.db.get_plugin_storage()["joinmarket"][COMMITMENTS_KEY]
    assert fresh.commitment_hex in stored and fresh.commitment_hex.upper() not in stored
    w.run(fill_refused(w, fresh, commitment="P" + fresh.commitment_hex.upper()))
    r = refusals_since(w, n_ref)
    assert [(x.stage, x.case) for x in r] == [("auth", "T5")]
    # and the handler itself, given upper-case hex
    n_ref = len(m.refusals)
    w.run(m.on_JMAuthReceived(nick=t.nick, offer=offer_dict(w),
                              commitment=fresh.commitment_hex.upper(),
                              revelation=fresh.serialize_revelation(), amount=AMOUNT,
                              kphex="ab" * 32))
    assert [x.case for x in refusals_since(w, n_ref)] == ["T5"]
    assert_clean(w)


def test_t6_invalid_podle_or_index_3_refused(world):
    """A PoDLE whose s is off by one, and a valid PoDLE at NUMS index 3: refused (T6); the
    commitments are not recorded (nothing was answered)."""
    w, m, t = world, world.maker, world.taker
    good = t.podle()
    s_bad = ((int.from_bytes(good.s, "big") + 1) % CURVE_ORDER).to_bytes(32, "big")
    bad = PoDLE(good.utxo, good.P, good.P2, s_bad, good.e)
    idx3 = t.podle(outpoint=t.podle_coins[0], index=3)
    for pod in (bad, idx3):
        n_ref = len(m.refusals)
        w.run(fill_refused(w, pod))
        assert [(x.stage, x.case) for x in refusals_since(w, n_ref)] == [("auth", "T6")]
        assert not m.commitment_used(pod.commitment_hex)
    # garbage revelation through the handler: refused, never raised
    n_ref = len(m.refusals)
    for rev in ("x|y", good.serialize_revelation().replace("|", "||", 1), None, 17):
        w.run(m.on_JMAuthReceived(nick=t.nick, offer=offer_dict(w),
                                  commitment=good.commitment_hex, revelation=rev,
                                  amount=AMOUNT, kphex="ab" * 32))
    assert [x.case for x in refusals_since(w, n_ref)] == ["T6"] * 4
    assert_clean(w)


def test_t7_commitment_utxo_too_young_too_small_or_not_owned(world):
    """The commitment utxo is unconfirmed (age policy 1), worth less than 20 % of the amount,
    or not owned by P (PoDLE made with another coin's key): refused (T7)."""
    w, m, t = world, world.maker, world.taker
    young = fund_wallet(w.node, w.bitcoind, w.taker_wallet, [2_500_000], confirmations=0)[0]
    cases = {
        "young": t.podle(outpoint=young, index=0),
        "small": t.podle(outpoint=w.small_coin, index=0),
        "not P": t.podle(outpoint=t.podle_coins[1], index=2, key_outpoint=w.small_coin),
    }
    for name, pod in cases.items():
        n_ref = len(m.refusals)
        w.run(fill_refused(w, pod))
        r = refusals_since(w, n_ref)
        assert [(x.stage, x.case) for x in r] == [("auth", "T7")], (name, r)
        assert not m.commitment_used(pod.commitment_hex)


def test_t9_amount_outside_offer_or_negative_fee_refused(world):
    """The daemon passes on an amount our current offer does not allow, or one at which the
    offer's net fee (``real_cjfee − txfee``) would be negative: refused before any chain
    question, the commitment not used (T9).  Our offers as derived never allow a negative fee
    (the minsize lift, ``cjfee = txfee + cjfee_a``), so the negative case uses an offer we
    announced with a txfee above its fee (e.g. under earlier settings); a net fee of exactly 0
    is accepted (reference rule)."""
    w, m, t = world, world.maker, world.taker
    pod = t.podle()
    n_ref = len(m.refusals)
    for amount in (749_999, 10**15):
        w.run(m.on_JMAuthReceived(nick=t.nick, offer=offer_dict(w),
                                  commitment=pod.commitment_hex,
                                  revelation=pod.serialize_revelation(), amount=amount,
                                  kphex="ab" * 32))
    assert [x.case for x in refusals_since(w, n_ref)] == ["T9", "T9"]
    assert not m.commitment_used(pod.commitment_hex)
    assert_clean(w)

    announced = m.announced
    n_ref, n_io = len(m.refusals), w.spy.count("JMIOAuth")
    try:
        for txfee, net in ((5_001, -1), (5_000, 0)):
            m.announced = [{"oid": 0, "ordertype": "sw0absoffer", "minsize": 100_000,
                            "maxsize": 10**8, "txfee": txfee, "cjfee": 5_000}]
            pod = t.podle()
            w.run(m.on_JMAuthReceived(nick="J5negfeetakerXXX", offer=offer_dict(w),
                                      commitment=pod.commitment_hex,
                                      revelation=pod.serialize_revelation(), amount=AMOUNT,
                                      kphex="ab" * 32))
            if net < 0:
                assert [(x.case, x.reason) for x in refusals_since(w, n_ref)] == \
                    [("T9", "net fee -1 < 0")]
                assert not m.commitment_used(pod.commitment_hex)
                assert w.spy.count("JMIOAuth") == n_io
            else:                        # accepted: answered with !ioauth, commitment kept
                assert [x.case for x in refusals_since(w, n_ref)] == ["T9"]
                assert m.commitment_used(pod.commitment_hex)
                assert w.spy.count("JMIOAuth") == n_io + 1
    finally:
        m.announced = announced
        m._drop("J5negfeetakerXXX", "test done")
    assert_clean(w)


# ------------------------------------------------------------------------------------------
# T8, timeouts, pushes
# ------------------------------------------------------------------------------------------

def test_t8_tx_without_session_and_timeout_releases_coins(world, sign_spy):
    """A !tx for a nick without a session is refused (T8). A session that times out releases
    its reserved coins (the next taker gets them) and a late !tx gets no signature (T8)."""
    w, m, t = world, world.maker, world.taker
    n_ref = len(m.refusals)
    w.run(m.on_JMTXReceived(nick="J5nosessionXXXXX", tx=b"\x02\x00\x00\x00", offer={}))
    assert [x.case for x in refusals_since(w, n_ref)] == ["T8"]

    m.settings = replace(m.settings, session_timeout=3.0)
    try:
        fill = w.run(round_to_ioauth(w))
        assert m.status()["reserved_coins"] == list(fill.ioauth.outpoints)
        w.run(wait_until(lambda: not m.sessions, 15, "the session to time out"))
        assert_clean(w)
        n_ref, n_sigs, n_calls = len(m.refusals), len(t.sigs()), w.spy.count("JMTXSigs")

        async def late():
            plan, tx = await t.build(fill, taker_coins(w), m.nick)
            await t.send_tx(m.nick, tx)
            return await wait_refusal(w, n_ref, "tx")      # the maker's last word on this !tx
        r = w.run(late())
        assert [x.case for x in r] == ["T8"]
        assert w.spy.count("JMTXSigs") == n_calls and sign_spy == []
        assert len(t.sigs()) == n_sigs
    finally:
        m.settings = replace(m.settings, session_timeout=600)
    # the released coin is offered to the next taker again
    fill2 = w.run(round_to_ioauth(w))
    assert fill2.ioauth.outpoints == fill.ioauth.outpoints
    m._drop(t.nick, "taker abandoned")
    assert_clean(w)


def test_reserved_coins_never_shared_between_sessions(world):
    """While one taker's session holds a coin, a second taker's !auth gets other coins; a third
    finds nothing left and is refused ("no-coins") without revealing anything."""
    w, m, t = world, world.maker, world.taker
    fill = w.run(round_to_ioauth(w))
    held = set(fill.ioauth.outpoints)
    assert set(m.status()["reserved_coins"]) == held
    n_io = w.spy.count("JMIOAuth")
    n_ref = len(m.refusals)
    pod2 = t.podle()
    # a second taker (the daemon knows no session for it, so it refuses the JMIOAuth and the
    # maker drops that session again): what matters is which coins the maker picked
    w.run(m.on_JMAuthReceived(nick="J5secondtakerXXX", offer=offer_dict(w),
                              commitment=pod2.commitment_hex,
                              revelation=pod2.serialize_revelation(), amount=AMOUNT,
                              kphex="cd" * 32))
    assert w.spy.count("JMIOAuth") == n_io + 1
    second = set(w.spy.calls[-1][1]["utxolist"])
    assert second and not (second & held)
    assert set(m.status()["reserved_coins"]) == held
    # with every other coin excluded, a third taker gets nothing
    m.settings = replace(m.settings, excluded_outpoints=frozenset(
        c.prevout.to_str() for c in w.maker_wallet.get_utxos()) - held)
    try:
        pod3 = t.podle()
        w.run(m.on_JMAuthReceived(nick="J5thirdtakerXXXX", offer=offer_dict(w),
                                  commitment=pod3.commitment_hex,
                                  revelation=pod3.serialize_revelation(), amount=AMOUNT,
                                  kphex="ef" * 32))
        assert refusals_since(w, n_ref)[-1].case == "no-coins"
        assert w.spy.count("JMIOAuth") == n_io + 1
        assert not m.commitment_used(pod3.commitment_hex)
    finally:
        m.settings = replace(m.settings, excluded_outpoints=frozenset())
    m._drop(t.nick, "test done")
    assert_clean(w)


def test_push_of_a_transaction_we_did_not_sign_refused(world):
    """!push (JMTXBroadcast) of a transaction the maker never signed, or of garbage: not
    broadcast, no exception."""
    w, m = world, world.maker
    n_b, n_ref = m.broadcasts, len(m.refusals)
    some = w.bitcoind.rpc("getblock", w.bitcoind.rpc("getbestblockhash"), 2)["tx"][0]["hex"]
    w.run(m.on_JMTXBroadcast(tx=bytes.fromhex(some)))
    w.run(m.on_JMTXBroadcast(tx=b"\x00garbage"))
    assert m.broadcasts == n_b
    assert [x.case for x in refusals_since(w, n_ref)] == ["T8", "malformed"]


def test_hostile_fields_dropped_never_raised(world):
    """Wrong types and junk in every field of the daemon's events: each is refused with a case
    id and logged, no handler raises, nothing is reserved, no commitment is recorded."""
    w, m, t = world, world.maker, world.taker
    pod = t.podle()
    good = dict(nick=t.nick, offer=offer_dict(w), commitment=pod.commitment_hex,
                revelation=pod.serialize_revelation(), amount=AMOUNT, kphex="ab" * 32)
    bad_variants = [
        dict(offer=None), dict(offer={"oid": "zz"}), dict(offer=[1, 2]), dict(amount="5000000"),
        dict(amount=True), dict(amount=None), dict(commitment=None), dict(commitment="zz" * 32),
        dict(commitment=pod.commitment_hex + "00"), dict(kphex=None), dict(kphex="zz" * 32),
        dict(nick=None, kphex=17),
    ]
    n_ref, n_io = len(m.refusals), w.spy.count("JMIOAuth")
    for v in bad_variants:
        w.run(m.on_JMAuthReceived(**dict(good, **v)))
    cases = [x.case for x in refusals_since(w, n_ref)]
    assert len(cases) == len(bad_variants) and "internal" not in cases, cases
    assert w.spy.count("JMIOAuth") == n_io and not m.commitment_used(pod.commitment_hex)
    n_ref, n_sigs = len(m.refusals), w.spy.count("JMTXSigs")
    for kw in (dict(nick=t.nick, tx=None), dict(nick=None, tx=12), dict(tx="!!notbase64")):
        w.run(m.on_JMTXReceived(offer=None, **kw))
    w.run(m.on_JMTXBroadcast(tx=None))
    assert len(refusals_since(w, n_ref)) == 4
    assert w.spy.count("JMTXSigs") == n_sigs
    assert_clean(w)


def test_offer_derivation_from_wallet(world):
    """offers(): one offer of the wallet's script type; maxsize = confirmed balance of the
    richest depth − max(27 300, txfee) (capped by maxsize), frozen and excluded (bond) coins left
    out; relative
    minsize lifted so the fee is ≥ 1.5 × txfee; absolute cjfee = txfee + cjfee_a; nothing when
    the balance cannot carry minsize."""
    from electrum_joinmarket.depths.record import DepthRecord
    from electrum_joinmarket.maker.maker import Maker, MakerError, plugin_storage
    w = world
    wallet = w.maker_wallet
    rec = DepthRecord(wallet, plugin_storage(wallet))

    def richest(exclude=()) -> int:
        by_depth: dict = {}
        for c in rec.coins():
            if c.confirmed and c.outpoint not in exclude:
                by_depth[c.depth] = by_depth.get(c.depth, 0) + c.value
        return max(by_depth.values())
    bal = richest()
    mk = Maker(wallet, replace(SETTINGS, ordertype="absoffer", txfee=40_000, cjfee_a=700),
               password=MAKER_PW)
    [o] = mk.offers()
    assert o == {"oid": 0, "ordertype": "sw0absoffer", "minsize": 100_000,
                 "maxsize": bal - 40_000, "txfee": 40_000, "cjfee": 40_700}
    rel = Maker(wallet, replace(SETTINGS, txfee=300, cjfee_r="0.0001"), password=MAKER_PW)
    assert rel.offers()[0]["minsize"] == 4_500_000 and rel.offers()[0]["cjfee"] == "0.0001"
    capped = Maker(wallet, replace(SETTINGS, maxsize=1_000_000), password=MAKER_PW)
    assert capped.offers()[0]["maxsize"] == 1_000_000
    biggest = max(wallet.get_spendable_coins(confirmed_only=True), key=lambda c: c.value_sats())
    ex = Maker(wallet, replace(SETTINGS, excluded_outpoints=frozenset(
        {biggest.prevout.to_str()})), password=MAKER_PW)
    without = richest(exclude={biggest.prevout.to_str()})
    assert ex.offers()[0]["maxsize"] == without - 27_300
    wallet.set_frozen_state_of_coins([biggest.prevout.to_str()], True)
    try:
        assert rel.offers()[0]["maxsize"] == without - 27_300
    finally:
        wallet.set_frozen_state_of_coins([biggest.prevout.to_str()], False)
    assert Maker(wallet, replace(SETTINGS, minsize=bal), password=MAKER_PW).offers() == []
    assert MakerSettings(ordertype="sw0absoffer").ordertype_for("p2wpkh-p2sh") == "swabsoffer"
    with pytest.raises(MakerError):
        Maker(wallet, SETTINGS, password="wrong")
    with pytest.raises(MakerError):
        Maker(wallet, SETTINGS, password=None)
    with pytest.raises(MakerError):
        MakerSettings(ordertype="sw0whatever")


def test_daemon_lost_mid_session_releases_everything(world, tmp_path):
    """F3 / invariant 2: the maker's jmdaemon dies while a taker session holds coins: the maker
    reports it (not running), every reservation is gone, the used commitment is kept."""
    w, t = world, world.taker
    wallet = new_wallet(w.node, w.bitcoind, [12_000_000], name="maker-yg-f3")
    try:
        proc = start_daemon(tmp_path, "maker-f3")
        m2, _spy = w.run(start_maker(wallet, proc.port, t.chan, SETTINGS))

        async def go():
            await t.new_round()
            await t.orderbook(m2.nick)
            fill = await t.fill(m2.nick, dict(m2.announced[0]), AMOUNT, t.podle())
            return await t.wait_ioauth(fill, m2.nick)
        fill = w.run(go())
        assert m2.status()["reserved_coins"] == list(fill.ioauth.outpoints)
        proc.stop()
        w.run(wait_until(lambda: not m2.running, 15, "the maker to notice the lost daemon"))
        st = m2.status()
        assert st["sessions"] == [] and st["reserved_coins"] == [] and not st["running"]
        assert m2.commitment_used(fill.podle.commitment_hex)
        m2.stop()
        assert "Traceback" not in proc.log()
    finally:
        w.node.close_wallet(wallet)


# ------------------------------------------------------------------------------------------
# M2 (issue 12): failed sessions must not walk the coinjoin output past the change gap limit
# ------------------------------------------------------------------------------------------

def test_m2_unsigned_sessions_reuse_their_addresses_and_a_seed_restore_finds_the_coinjoin(
        world, tmp_path):
    """Eight takers in a row get our !ioauth and vanish (cheap: the daemon knows no session for
    these nicks, so each session ends unsigned). Each one's two addresses go to the next: one
    pair in all, within Electrum's change gap limit. The next real coinjoin pays those addresses,
    and a wallet restored from the maker's seed finds every satoshi of it. Addresses of a
    session we signed are never handed out again, even when that session ends without the
    coinjoin."""
    w, m, t = world, world.maker, world.taker
    wallet = w.maker_wallet
    new_ops = fund_wallet(w.node, w.bitcoind, w.taker_wallet, [2_000_000] * 4)
    pods = iter([t.podle(op, i) for op in new_ops for i in range(3)])

    def last_ioauth():
        return [kw for n, kw in w.spy.calls if n == "JMIOAuth"][-1]

    def vanishing_taker(k):
        pod = next(pods)
        n_io = w.spy.count("JMIOAuth")
        w.run(m.on_JMAuthReceived(nick=f"J5vanishing{k:05d}", offer=offer_dict(w),
                                  commitment=pod.commitment_hex,
                                  revelation=pod.serialize_revelation(), amount=AMOUNT,
                                  kphex="cd" * 32))
        assert w.spy.count("JMIOAuth") == n_io + 1        # our !ioauth went out ...
        assert not m.sessions                              # ... and the session ended unsigned
        kw = last_ioauth()
        return kw["cjaddr"], kw["changeaddr"]

    def change_index(addr):
        branch, i = wallet.get_address_index(addr)
        assert branch == 1, addr
        return i

    used = [change_index(a) for a in wallet.get_change_addresses() if wallet.adb.is_used(a)]
    last_used = max(used, default=-1)          # Electrum's gap counts from here (-1: none used)
    pairs = [vanishing_taker(k) for k in range(8)]
    assert len(set(pairs)) == 1, pairs
    pair = pairs[0]
    assert pair[0] != pair[1]
    for a in pair:
        assert wallet.is_change(a) and wallet.is_address_reserved(a) and not wallet.adb.is_used(a)
        assert change_index(a) <= last_used + wallet.gap_limit_for_change
    spare = set(m.storage[SPARE_ADDRESSES_KEY])                  # in the wallet file
    assert set(pair) <= spare
    assert all(change_index(a) > max(map(change_index, pair)) for a in spare - set(pair))

    # a real taker: its session gets the same pair, we sign, it vanishes before broadcasting
    pod = next(pods)
    fill = w.run(round_to_ioauth(w, podle=pod))
    assert (fill.ioauth.cj_addr, fill.ioauth.change_addr) == pair
    assert set(m.storage[SPARE_ADDRESSES_KEY]) == spare - set(pair)

    async def signed():
        plan, tx = await t.build(fill, taker_coins(w), m.nick)
        n0 = len(t.sigs())
        await t.send_tx(m.nick, tx)
        for s in await t.wait_sigs(n0, len(fill.ioauth.utxos)):
            tb.verify_and_add_maker_sig(tx, s, fill.ioauth.utxos)
        tb.sign_our_inputs(w.taker_wallet, tx, None, plan)
        return tx
    tx = w.run(signed())
    assert tx.is_complete()
    m._drop(t.nick, "the taker vanished after our signature")
    assert set(m.storage[SPARE_ADDRESSES_KEY]) == spare - set(pair)   # signed: never reused
    after_signed = vanishing_taker(99)
    assert not set(after_signed) & set(pair)
    m._drop(t.nick, "test")

    # the coinjoin goes out late, pays the reused pair, and a seed restore finds all of it
    before = wallet.get_balance()[0]
    coin_in = sum(u.value for u in fill.ioauth.utxos)
    w.run(w.node.network.broadcast_transaction(tx))
    w.bitcoind.mine(1)
    w.node.wait_tx(wallet, tx.txid(), confirmations=1)
    ours = {o.address: o.value for o in tx.outputs() if o.address in pair}
    assert ours == {pair[0]: AMOUNT, pair[1]: coin_in - AMOUNT - 100 + REAL_CJFEE}
    w.run(wait_until(lambda: wallet.get_balance()[0] == before + REAL_CJFEE - 100, 30,
                     "the maker's balance"))
    seed = wallet.keystore.get_seed(MAKER_PW)
    restored = new_wallet(w.node, name="maker-yg-restored", seed=seed)
    try:
        w.node.wait_synced(restored)
        assert restored.get_balance()[0] == wallet.get_balance()[0] == before + 900
        assert all(restored.adb.is_used(a) for a in pair)
    finally:
        w.node.close_wallet(restored)
