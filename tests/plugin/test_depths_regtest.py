"""The depth record (electrum_joinmarket.depths) on real Electrum 4.8 wallets on the regtest stack:
a real coinjoin (built, checked and signed by our taker/maker transaction code, no messaging)
moves the taker's and each maker's coinjoin output to the next depth and keeps their change;
an ordinary Electrum payment keeps its change in the paying depth; a payment that merges
depths is reported; reserved addresses are never handed out by Electrum; and a wallet restored
from its seed (no record) gets the same depths back, with a report of what was rebuilt."""
from __future__ import annotations

import pytest

from electrum_joinmarket.depths import rules
from electrum_joinmarket.depths.record import DEPTHS_KEY, DepthError, DepthRecord, MixedDepthsError

from .test_coinjoin_regtest import OFFER_A, OFFER_B, Maker, run_coinjoin

pytestmark = pytest.mark.stack


def record_of(wallet) -> DepthRecord:
    from electrum_joinmarket.maker.maker import plugin_storage
    return DepthRecord(wallet, plugin_storage(wallet))


def depth_map(rec: DepthRecord) -> dict[str, tuple[int, int, str]]:
    return {c.outpoint: (c.depth, c.coinjoins, c.kind) for c in rec.coins()}


def outpoint_of(tx, address) -> str:
    n = [i for i, o in enumerate(tx.outputs()) if o.address == address]
    assert len(n) == 1
    return f"{tx.txid()}:{n[0]}"


def test_depths_follow_a_coinjoin_a_payment_and_a_merge_then_rebuild_from_seed(
        bitcoind, electrum_node, make_wallet):
    taker = make_wallet(fund=[15_000_000, 10_000_000])
    wa = make_wallet(fund=[30_000_000, 20_000_000])
    wb = make_wallet(fund=[30_000_000])
    rec, rec_a, rec_b = record_of(taker), record_of(wa), record_of(wb)
    # fresh wallets: deposits in depth 0
    assert rec.balances() == {0: 25_000_000, 1: 0, 2: 0, 3: 0, 4: 0}
    assert {k for _d, _c, k in depth_map(rec).values()} == {rules.DEPOSIT}

    # the coinjoin: taker sends 10M INTERNAL (to an address reserved for depth 1); each maker's
    # coinjoin output goes to an address reserved for its next depth, change to its own depth
    internal, change = rec.reserve_address(1), rec.reserve_address(0)
    makers = []
    for w, r, offer in ((wa, rec_a, OFFER_A), (wb, rec_b, OFFER_B)):
        coins = sorted(w.get_spendable_coins(), key=lambda c: c.prevout.to_str())
        makers.append(Maker(w, offer, coins, r.reserve_address(1), r.reserve_address(0)))
    cj = 10_000_000
    plan, tx = run_coinjoin(electrum_node, bitcoind, taker, None, makers, cj,
                            my_cj_addr=internal, my_change_addr=change)
    for w in (taker, wa, wb):
        electrum_node.wait_tx(w, tx.txid(), confirmations=1)
    rec.note_coinjoin(tx.txid(), cj)      # what the taker's runner records

    d = depth_map(rec)
    assert d[outpoint_of(tx, internal)] == (1, 1, rules.CJ_OUT)
    assert d[outpoint_of(tx, change)] == (0, 0, rules.CJ_CHANGE)
    my_change = plan.amounts.my_change
    assert rec.balances() == {0: my_change, 1: cj, 2: 0, 3: 0, 4: 0}
    for m, r in zip(makers, (rec_a, rec_b), strict=True):
        md = depth_map(r)
        assert md[outpoint_of(tx, m.cj_addr)] == (1, 1, rules.CJ_OUT)   # recognised by pattern
        assert md[outpoint_of(tx, m.change_addr)] == (0, 0, rules.CJ_CHANGE)
        assert r.balances()[1] == cj

    # an ordinary Electrum payment from depth 1 only: its change stays in depth 1
    outsider = make_wallet()
    pay_to = outsider.get_receiving_addresses()[0]
    depth1 = [c for c in taker.get_spendable_coins()
              if c.prevout.to_str() in rec.spendable_outpoints(1)]
    assert len(depth1) == 1
    from electrum.fee_policy import FeePolicy
    from electrum.transaction import PartialTxOutput
    ptx = taker.make_unsigned_transaction(
        coins=depth1, outputs=[PartialTxOutput.from_address_and_value(pay_to, 3_000_000)],
        fee_policy=FeePolicy("feerate:2000"))
    taker.sign_transaction(ptx, None)
    electrum_node.run(electrum_node.network.broadcast_transaction(ptx))
    bitcoind.mine(1)
    electrum_node.wait_tx(taker, ptx.txid(), confirmations=1)
    change_out = [f"{ptx.txid()}:{i}" for i, o in enumerate(ptx.outputs()) if o.address != pay_to]
    assert depth_map(rec)[change_out[0]] == (1, 1, rules.CHANGE)
    assert rec.merges() == []

    # a payment that merges a new deposit (depth 0) with depth 1's coin: reported, its change
    # in depth 0 (the least mixed); the coinjoin's change in depth 0 is not touched
    from devstack.wallets import fund_wallet
    deposit = fund_wallet(electrum_node, bitcoind, taker, [2_000_000])[0]
    assert depth_map(rec)[deposit] == (0, 0, rules.DEPOSIT)
    merging = [c for c in taker.get_spendable_coins()
               if c.prevout.to_str() in (deposit, change_out[0])]
    mtx = taker.make_unsigned_transaction(
        coins=merging, outputs=[PartialTxOutput.from_address_and_value(pay_to, 8_000_000)],
        fee_policy=FeePolicy("feerate:2000"))
    assert len(mtx.inputs()) == 2
    taker.sign_transaction(mtx, None)
    electrum_node.run(electrum_node.network.broadcast_transaction(mtx))
    bitcoind.mine(1)
    electrum_node.wait_tx(taker, mtx.txid(), confirmations=1)
    assert rec.merges() == [{"txid": mtx.txid(), "depths": [0, 1]}]
    merged = [c for c in rec.coins() if c.outpoint.startswith(mtx.txid())]
    assert [(c.depth, c.coinjoins, c.kind) for c in merged] == [(0, 1, rules.MERGED)]
    late = fund_wallet(electrum_node, bitcoind, taker, [1_500_000])[0]
    assert depth_map(rec)[late] == (0, 0, rules.DEPOSIT)
    assert depth_map(rec)[outpoint_of(tx, change)] == (0, 0, rules.CJ_CHANGE)
    before_restore = depth_map(rec)
    # what the record worked out transaction by transaction = a full replay of the history
    full = DepthRecord(taker, {})
    assert depth_map(full) == before_restore and full.merges() == rec.merges()
    # the record was made when the wallet held deposits only: nothing to rebuild, no report
    assert rec.report() is None

    # restore from seed: no record, the same depths from history alone (recorded coinjoin
    # amounts are gone, the equal outputs are enough), and a report saying so
    seed = taker.keystore.get_seed(None)
    restored = electrum_node.create_wallet("depths-restored", seed=seed)
    try:
        electrum_node.wait(lambda: {c.prevout.to_str() for c in restored.get_utxos()}
                           == set(before_restore), 30, "the restored wallet's coins")
        from electrum_joinmarket.maker.maker import plugin_storage
        assert DEPTHS_KEY not in plugin_storage(restored)
        record_of(restored)      # a session opened and closed before any replay ran
        rrec = record_of(restored)
        assert depth_map(rrec) == before_restore
        report = rrec.report()
        assert report is not None
        assert report.coins == 3 and report.deposits == 1
        assert report.coinjoins_recognised == 1 and report.merges == 1
        assert "restore from seed" in report.message()
        rrec.dismiss_report()
        assert rrec.report() is None and DepthRecord(restored, plugin_storage(restored)).report() is None
        print(f"\nDEPTHS before={sorted(before_restore.values())} "
              f"restored={sorted(depth_map(rrec).values())} report={report.to_dict()}")
    finally:
        electrum_node.close_wallet(restored)
    # maker A's wallet restored from its seed: its coinjoin output is back in depth 1
    a_before = depth_map(rec_a)
    assert sorted(a_before.values()) == [(0, 0, rules.CJ_CHANGE), (1, 1, rules.CJ_OUT)]
    restored_a = electrum_node.create_wallet("depths-restored-a", seed=wa.keystore.get_seed(None))
    try:
        electrum_node.wait(lambda: {c.prevout.to_str() for c in restored_a.get_utxos()}
                           == set(a_before), 30, "maker A's restored coins")
        assert depth_map(record_of(restored_a)) == a_before
    finally:
        electrum_node.close_wallet(restored_a)


@pytest.fixture
def plugin_registered(electrum_node):
    """Electrum drops the wallet data of plugins absent from its config when a wallet closes;
    a user who ever enabled the plugin has the key."""
    if electrum_node.config.get("plugins.joinmarket.enabled") is None:
        electrum_node.config.set_key("plugins.joinmarket.enabled", False)


def test_reserved_addresses_are_not_handed_out_by_electrum(bitcoind, electrum_node, make_wallet,
                                                           plugin_registered):
    w = make_wallet(fund=[5_000_000])
    rec = record_of(w)
    reserved = {rec.reserve_address(d) for d in (1, 2, 2)}
    assert len(reserved) == 3
    assert all(w.is_address_reserved(a) and w.is_change(a) for a in reserved)
    assert [rec.address_depth(a) for a in sorted(reserved)].count(2) == 2
    # the Receive tab hands out receiving-branch addresses only
    handed = {w.get_unused_address(), w.get_receiving_address()}
    req_key = w.create_request(100_000, "x", 3600, w.get_unused_address())
    handed.add(w.get_request(req_key).get_address())
    assert not handed & reserved
    # Electrum's coin chooser does not send change to them
    from electrum.fee_policy import FeePolicy
    from electrum.transaction import PartialTxOutput
    other = make_wallet()
    for _ in range(3):
        tx = w.make_unsigned_transaction(
            outputs=[PartialTxOutput.from_address_and_value(other.get_receiving_addresses()[0],
                                                            1_000_000)],
            fee_policy=FeePolicy("feerate:2000"))
        assert not {o.address for o in tx.outputs()} & reserved
    # the record (and Electrum's reserved flag) is on disk: reload the wallet file
    path = w.storage.path
    electrum_node.close_wallet(w)
    w2 = electrum_node.load_wallet(path)
    try:
        rec2 = record_of(w2)
        assert {a for a in reserved if rec2.address_depth(a) is not None} == reserved
        assert all(w2.is_address_reserved(a) for a in reserved)
    finally:
        electrum_node.close_wallet(w2)


def test_user_moves_a_deposit_and_mixed_spends_are_refused(bitcoind, electrum_node, make_wallet):
    w = make_wallet(fund=[4_000_000, 3_000_000, 2_000_000])
    rec = record_of(w)
    coins = [c.outpoint for c in rec.coins()]
    rec.set_coin_depth(coins[1], 3)
    assert rec.depth_of(coins[1]).depth == 3 and rec.depth_of(coins[1]).kind == rules.USER
    assert rec.balances() == {0: 6_000_000, 1: 0, 2: 0, 3: 3_000_000, 4: 0}
    assert rec.check_one_depth([coins[0], coins[2]]) == 0
    with pytest.raises(MixedDepthsError) as exc:
        rec.check_one_depth(coins)
    assert exc.value.depths == (0, 3)
    with pytest.raises(DepthError):
        rec.set_coin_depth(coins[0], 5)
    with pytest.raises(DepthError):
        rec.check_one_depth(["00" * 32 + ":0"])
    # the deposit depth applies to later deposits; earlier ones stay where they are
    rec.set_deposit_depth(2)
    from devstack.wallets import fund_wallet
    new = fund_wallet(electrum_node, bitcoind, w, [1_000_000])[0]
    assert rec.depth_of(new).depth == 2
    assert rec.balances() == {0: 6_000_000, 1: 0, 2: 1_000_000, 3: 3_000_000, 4: 0}


def test_taker_and_runner_refuse_coins_of_two_depths(electrum_node, make_wallet, jm_plugin):
    """The runner refuses a Coins-tab selection spanning two depths, picks one depth otherwise;
    the taker itself refuses coins of two depths before it contacts anyone."""
    from decimal import Decimal

    from electrum_joinmarket.market.limits import FeeLimits
    from electrum_joinmarket.protocol.commitments import CommitmentStore
    from electrum_joinmarket.runner import RunnerError
    from electrum_joinmarket.taker.taker import Taker, TakerConfig
    w = make_wallet(fund=[3_000_000, 2_000_000, 1_500_000])
    session = jm_plugin.session_for(w)
    rec = session.depths
    ops = [c.outpoint for c in rec.coins()]        # largest first: 3M, 2M, 1.5M
    rec.set_coin_depth(ops[0], 1)                   # depth 1: 3M; depth 0: 3.5M
    limits = FeeLimits(50_000, Decimal("0.01"))
    dest = w.get_receiving_addresses()[9]
    runner = jm_plugin.runner
    cfg = TakerConfig(amount=1_000_000, destination=dest, limits=limits, coins=ops)
    with pytest.raises(RunnerError, match="different JoinMarket depths"):
        runner.depth_coins(session, cfg, None)
    cfg = TakerConfig(amount=1_000_000, destination=dest, limits=limits)
    assert runner.depth_coins(session, cfg, None) == 0        # the lowest depth that can pay
    assert set(cfg.coins) == set(ops[1:])
    cfg = TakerConfig(amount=4_000_000, destination=dest, limits=limits)
    with pytest.raises(RunnerError, match="no depth holds enough"):
        runner.depth_coins(session, cfg, None)                 # 6.5M in all: 3.5M + 3M by depth
    cfg = TakerConfig(amount=0, destination=dest, limits=limits)
    with pytest.raises(RunnerError, match="say which"):
        runner.depth_coins(session, cfg, None)                 # a sweep of which depth?
    assert runner.depth_coins(session, cfg, 1) == 1 and cfg.coins == [ops[0]]
    # the taker, given coins of two depths directly, refuses before any network contact
    taker = Taker(wallet=w, network=electrum_node.network,
                  commitments=CommitmentStore(session.storage),
                  config=TakerConfig(amount=1_000_000, destination=dest, limits=limits,
                                     coins=ops),
                  password=None, daemon_host="127.0.0.1", daemon_port=1, chan_configs=[],
                  net_name="regtest", depths=rec)
    outcome = electrum_node.run(taker.run())
    assert outcome.status == "failed" and "different JoinMarket depths" in outcome.message


def test_depth_count_and_deposit_depth_through_the_command_are_on_disk_at_once(
        bitcoind, electrum_node, make_wallet, jm_plugin):
    """Issue 15 (a configurable count of depths, deposits to a depth the user picks), headless:
    ``joinmarket_depth_settings`` changes both, refuses what cannot be (one line, what to do),
    and the change is in the wallet file at once — what a killed Electrum leaves on disk — not
    only at the next save."""
    import json

    from devstack.wallets import fund_wallet
    from electrum_joinmarket.errors import UserError
    w = make_wallet(fund=[2_000_000, 1_000_000])
    cmds = electrum_node.commands()

    def on_disk():
        with open(w.storage.path) as f:
            return json.load(f)["plugin_data"]["joinmarket"][DEPTHS_KEY]
    shown = electrum_node.run(cmds.joinmarket_depth_settings(wallet=w))
    assert shown == {"count": 5, "deposit_depth": 0,
                     "balances": {0: 3_000_000, 1: 0, 2: 0, 3: 0, 4: 0}}
    got = electrum_node.run(cmds.joinmarket_depth_settings(wallet=w, count=3))
    assert got == {"count": 3, "deposit_depth": 0, "balances": {0: 3_000_000, 1: 0, 2: 0}}
    assert on_disk()["count"] == 3                      # each change saved by itself
    got = electrum_node.run(cmds.joinmarket_depth_settings(wallet=w, deposit_depth=2))
    assert got["count"] == 3 and got["deposit_depth"] == 2
    assert on_disk()["deposit_depth"] == 2
    for kw, why in (({"count": 0}, "between 1 and"), ({"count": "many"}, "whole number"),
                    ({"deposit_depth": 3}, "from 0 to 2")):
        with pytest.raises(UserError, match=why):
            electrum_node.run(cmds.joinmarket_depth_settings(wallet=w, **kw))
    assert (on_disk()["count"], on_disk()["deposit_depth"]) == (3, 2)
    # a deposit now lands in depth 2; the earlier coins stay in depth 0
    new = fund_wallet(electrum_node, bitcoind, w, [500_000])[0]
    rec = jm_plugin.session_for(w).depths
    assert rec.depth_of(new).depth == 2
    assert rec.balances() == {0: 3_000_000, 1: 0, 2: 500_000}
    assert rules.next_depth(2, rec.count) == 0           # a coinjoin of depth 2 wraps to 0
