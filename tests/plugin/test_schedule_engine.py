"""The schedule engine on real Electrum 4.8 wallets on the regtest stack, with real coinjoin
transactions (built, checked and signed by our taker/maker transaction code, two maker
wallets, broadcast through Electrum) but without the messaging layer: the executor plays taker
and makers in-process.  The end-to-end tests with real makers over jmdaemon are in
tests/e2e/test_schedule_e2e.py.

What is checked: a 3-step schedule (sats INTERNAL, fraction INTERNAL, sweep to an address) lands
exact amounts in exact depths; the wait in blocks after a step is honoured; a failed attempt is
retried with the maker it blamed ignored; an Electrum killed after the transaction was sent to
makers and before it was broadcast (modelled by the wallet file as it was on disk at that
moment, loaded into a fresh wallet object and a fresh engine) resumes without running the step
twice and without a double spend, and so does one killed right after the broadcast, before it
recorded it; no transaction spends coins of two depths of any wallet."""
from __future__ import annotations

import asyncio
import random
import shutil
import time

import pytest

from electrum_joinmarket.depths.record import DepthRecord
from electrum_joinmarket.maker.maker import plugin_storage
from electrum_joinmarket.market import feemodel as fm
from electrum_joinmarket.protocol.commitments import CommitmentStore
from electrum_joinmarket.schedule.engine import BUILT_STAGE, Engine
from electrum_joinmarket.schedule.model import INTERNAL, Schedule, ScheduleStatus, Step, StepStatus
from electrum_joinmarket.schedule.store import ScheduleStore
from electrum_joinmarket.tx import taker_tx as tb

from .test_coinjoin_regtest import LIMITS, OFFER_A, OFFER_B, Maker, prev_txs

pytestmark = pytest.mark.stack


class RealJoins:
    """Executor: one real coinjoin per attempt between the taker wallet (the request's coins)
    and two maker wallets (coins of one depth each, outputs to addresses reserved for their
    depths). ``script[(step, attempt)]`` injects "fail" or "hang" (sent !tx, never broadcast)."""

    def __init__(self, node, bitcoind, taker, makers, script=None):
        self.node, self.bitcoind, self.taker = node, bitcoind, taker
        self.makers = makers            # [(wallet, DepthRecord, offer)]
        self.script = dict(script or {})
        self.txs: list = []             # every transaction built: (step, attempt, tx)
        self.hung = asyncio.Event()

    async def __call__(self, req, progress):
        action = self.script.get((req.index, req.attempt))
        if action == "fail":
            progress({"stage": "failed", "message": "makers silent"})
            return _Outcome("failed", "too few makers answered", ignored_makers={"J5bad": "M10"})
        plan, tx = await asyncio.to_thread(self._build, req)
        self.txs.append((req.index, req.attempt, tx))
        progress({"stage": BUILT_STAGE, "txid": tx.txid(), "cj_amount": plan.cj_amount,
                  "inputs": [i.prevout.to_str() for i in tx.inputs()]})
        if action == "hang":                       # Electrum dies here: never broadcast
            self.hung.set()
            await asyncio.Event().wait()
        await asyncio.to_thread(self._sign_and_broadcast, plan, tx)
        if action == "hang-after-broadcast":       # dies before it learns the broadcast worked
            self.hung.set()
            await asyncio.Event().wait()
        return _Outcome("success", "ok", txid=tx.txid(), cj_amount=plan.cj_amount,
                        total_cost=plan.amounts.taker_cost)

    def _build(self, req):
        coins = [c for c in self.taker.get_spendable_coins() if c.prevout.to_str() in req.coins]
        assert {c.prevout.to_str() for c in coins} == set(req.coins)
        rate = self.node.run(fm.fetch_feerate(self.node.network, fallback_feerate=2000,
                                              rng=random.Random(5)))
        makers = []
        need = req.amount or sum(c.value_sats() for c in coins)
        for w, rec, offer in self.makers:
            mcoins = [w_c for w_c in w.get_spendable_coins()
                      if w_c.prevout.to_str() in rec.spendable_outpoints(0)
                      and w_c.value_sats() > need + 100_000]
            assert mcoins, "maker out of depth-0 coins"
            makers.append(Maker(w, offer, mcoins[:1], rec.reserve_address(1), rec.reserve_address(0)))
        self.current_makers = makers
        mis = [m.ioauth(self.bitcoind) for m in makers]
        sweep, est, amount = req.amount == 0, None, req.amount
        if sweep:
            est = fm.sweep_fee_estimate(len(coins), len(makers), rate)
            amount = fm.solve_sweep_cj_amount([m.offer for m in makers],
                                              sum(c.value_sats() for c in coins), est)
        change = None if sweep else DepthRecord(self.taker, plugin_storage(self.taker)) \
            .reserve_address(req.depth)
        plan = tb.plan_coinjoin(cj_amount=amount, my_coins=coins, makers=mis,
                                my_cj_addr=req.destination, my_change_addr=change, feerate=rate,
                                limits=LIMITS, script_type=tb.wallet_script_type(self.taker),
                                sweep=sweep, sweep_est_fee=est)
        prevs = prev_txs(self.node, [u.txid for m in mis for u in m.utxos])
        tx = tb.build_coinjoin(plan, coins, prevs, self.node.network.get_local_height(),
                               wallet=self.taker, rng=random.Random(1))
        return plan, tx

    def _sign_and_broadcast(self, plan, tx):
        wire = tb.tx_to_wire(tx)
        for m, mi in zip(self.current_makers, plan.makers, strict=True):
            for sig in m.on_tx(wire, plan.cj_amount):
                tb.verify_and_add_maker_sig(tx, sig, mi.utxos)
        tb.sign_our_inputs(self.taker, tx, None, plan)
        assert tx.is_complete()
        self.node.run(self.node.network.broadcast_transaction(tx))


class _Outcome:
    def __init__(self, status, message, txid=None, cj_amount=0, total_cost=0, ignored_makers=None):
        self.status, self.message, self.txid = status, message, txid
        self.cj_amount, self.total_cost = cj_amount, total_cost
        self.ignored_makers = ignored_makers or {}


def two_maker_world(node, bitcoind, make_wallet, taker_fund, maker_coins, script=None):
    """A funded taker, a destination wallet and two maker wallets (``maker_coins`` each, their
    depth records, offers A and B) behind a :class:`RealJoins` executor: (taker, dest, the
    makers' depth records, joins)."""
    taker = make_wallet(fund=taker_fund)
    wa = make_wallet(fund=maker_coins)
    wb = make_wallet(fund=maker_coins)
    dest = make_wallet()
    bitcoind.mine(2)
    mrecs = [DepthRecord(wa, plugin_storage(wa)), DepthRecord(wb, plugin_storage(wb))]
    joins = RealJoins(node, bitcoind, taker, [(wa, mrecs[0], OFFER_A), (wb, mrecs[1], OFFER_B)],
                      script=script)
    return taker, dest, mrecs, joins


def make_engine(node, wallet, execute, **kw):
    storage = plugin_storage(wallet)
    depths = DepthRecord(wallet, storage)

    async def on_network(txid):
        from electrum.network import UntrustedServerReturnedError
        try:
            await node.network.get_transaction(txid, timeout=10)
            return True
        except UntrustedServerReturnedError:
            return False
        except Exception:
            return None
    engine = Engine(wallet=wallet, store=ScheduleStore(storage, wallet.save_db), depths=depths,
                    commitments=CommitmentStore(storage, on_change=wallet.save_db),
                    execute=execute, tx_on_network=on_network, min_counterparties=2,
                    commitment_age=2, poll=kw.pop("poll", 0.2), **kw)
    return engine, depths


def drive(node, bitcoind, engine, sched_id, until, timeout=240, mine_when=None):
    """Run the engine's schedule on Electrum's loop; from this thread mine a block whenever the
    schedule waits for blocks/confirmations (``mine_when(schedule)`` may veto), until
    ``until(schedule)``; returns the future and the schedule."""
    fut = asyncio.run_coroutine_threadsafe(engine.run(sched_id), node.loop)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = engine.store.load(sched_id)
        if until(s):
            return fut, s
        if fut.done():
            fut.result()
            s = engine.store.load(sched_id)
            assert until(s), f"schedule ended as {s.status}: {s.message}"
            return fut, s
        if "waiting for" in s.message and (mine_when is None or mine_when(s)):
            bitcoind.mine(1)
        time.sleep(0.5)
    raise AssertionError(f"timeout; schedule: {engine.store.load(sched_id).message}")


def assert_one_depth_per_wallet(records, txs):
    for tx in txs:
        for rec in records:
            rec.check_tx_inputs(tx)            # raises MixedDepthsError


def kill_and_restart(node, wallet, tmp_path, name, joins):
    """Model ``kill -9`` of Electrum: the wallet file exactly as it is on disk now is what a
    restarted Electrum loads. The old objects are then discarded (their task cancelled, their
    wallet closed — after the copy, so nothing they do afterwards counts)."""
    snapshot = tmp_path / f"{name}.on-disk"
    shutil.copyfile(wallet.storage.path, snapshot)
    return snapshot


def restart(node, snapshot, name, joins, old_future, old_wallet):
    old_future.cancel()
    try:
        old_future.result(10)
    except BaseException:
        pass
    node.close_wallet(old_wallet)
    path = node.datadir / "regtest" / "wallets" / name
    shutil.copyfile(snapshot, path)
    wallet = node.load_wallet(path)
    joins.taker = wallet
    joins.hung.clear()
    engine, depths = make_engine(node, wallet, joins)
    return wallet, engine, depths


def test_engine_three_steps_exact_with_retry_and_kills(bitcoind, electrum_node, make_wallet,
                                                       tmp_path):
    node = electrum_node
    if node.config.get("plugins.joinmarket.enabled") is None:
        node.config.set_key("plugins.joinmarket.enabled", False)   # keep plugin data on close
    taker, dest, mrecs, joins = two_maker_world(
        node, bitcoind, make_wallet, [20_000_000, 6_000_000], [40_000_000, 40_000_000, 40_000_000],
        script={(0, 1): "hang-after-broadcast", (1, 1): "fail", (2, 1): "hang"})
    engine, depths = make_engine(node, taker, joins)
    dest_addr = dest.get_receiving_addresses()[0]
    sched = Schedule(steps=[Step(0, 12_000_000, 2, INTERNAL, wait_blocks=2),
                            Step(1, "0.5", 2, INTERNAL),
                            Step(1, 0, 2, dest_addr)], retry_wait=0.5)
    sched.validate(5)
    engine.store.save(sched)

    # kill 1: right after step 1's broadcast, before the engine learned it worked
    fut, s = drive(node, bitcoind, engine, sched.id,
                   lambda s: joins.hung.is_set(), mine_when=lambda s: False)
    first_txid = s.steps[0].pending_txids[0]["txid"]
    assert s.steps[0].status == StepStatus.RUNNING and s.steps[0].txid is None
    snap = kill_and_restart(node, taker, tmp_path, "kill1", joins)
    taker, engine, depths = restart(node, snap, "schedule-restart-1", joins, fut, taker)
    assert engine.store.load(sched.id).steps[0].status == StepStatus.RUNNING

    # restarted: step 1 is found on the network, not run again; then the schedule waits 2
    # blocks after its confirmation before step 2
    heights = {}

    def note(s):
        if s.current == 1 and "waiting for block" in s.message:
            heights.setdefault("first_wait", s.not_before_height)
        return True
    fut, s = drive(node, bitcoind, engine, sched.id,
                   lambda s: s.steps[2].status == StepStatus.RUNNING and joins.hung.is_set(),
                   mine_when=note)
    s0, s1 = s.steps[0], s.steps[1]
    assert s0.status == s1.status == StepStatus.DONE
    assert s0.txid == first_txid and s0.attempts == 1 and s0.cj_amount == 12_000_000
    assert [i for (i, _a, _t) in joins.txs].count(0) == 1          # never built twice
    assert heights["first_wait"] == s0.confirmed_height + 2
    assert s1.confirmed_height >= s0.confirmed_height + 2
    assert [i for (i, _a, _t) in joins.txs].count(1) == 1          # attempt 1 failed early
    assert s1.attempts == 2 and s1.ignored_makers == {"J5bad": "M10"}
    assert s1.cj_amount == 6_000_000               # 0.5 × depth 1's balance (12M) at its start
    assert s.snapshots == {"1": 12_000_000}
    held_txid = s.steps[2].pending_txids[0]["txid"]

    # kill 2: step 3's transaction was sent to the makers and never broadcast
    snap = kill_and_restart(node, taker, tmp_path, "kill2", joins)
    taker, engine2, depths2 = restart(node, snap, "schedule-restart-2", joins, fut, taker)
    try:
        on_disk = engine2.store.load(sched.id)
        assert on_disk.steps[2].status == StepStatus.RUNNING
        assert [p["txid"] for p in on_disk.steps[2].pending_txids] == [held_txid]
        fut2, s = drive(node, bitcoind, engine2, sched.id,
                        lambda s: s.status == ScheduleStatus.DONE)
        fut2.result(30)
        s2 = s.steps[2]
        assert s2.status == StepStatus.DONE and s2.attempts == 2
        assert [p["txid"] for p in s2.pending_txids][0] == held_txid
        assert s2.txid != held_txid and len(s2.pending_txids) == 2
        # the held transaction never reached the network; its taker inputs are spent once,
        # by the re-run
        from devstack.bitcoind import RPCError
        with pytest.raises(RPCError):
            bitcoind.rpc("getrawtransaction", held_txid, True)
        held = [tx for (i, a, tx) in joins.txs if tx.txid() == held_txid][0]
        rerun = [tx for (i, a, tx) in joins.txs if tx.txid() == s2.txid][0]
        mine_in = {i.prevout.to_str() for i in held.inputs()} & set(s.steps[2].inputs)
        assert mine_in
        for op in mine_in:
            txid, n = op.split(":")
            assert taker.db.get_spent_outpoint(txid, int(n)) == rerun.txid()

        # amounts and depths, exact
        for st in s.steps:
            assert bitcoind.rpc("getrawtransaction", st.txid, True)["confirmations"] >= 1
        node.wait_tx(dest, s2.txid, confirmations=1)
        assert dest.get_balance()[0] == s2.cj_amount
        bal = depths2.balances()
        assert bal[1] == 0                                  # depth 1 swept
        assert bal[2] == 6_000_000                          # step 2's coinjoin output
        tx0 = [tx for (i, _a, tx) in joins.txs if i == 0][0]
        mine0 = sum(o.value for o in tx0.outputs() if taker.is_mine(o.address))
        assert bal[0] == mine0 - 12_000_000 > 26_000_000 - 12_000_000 - 20_000   # its change
        cd2 = [c for c in depths2.coins(2)]
        assert [(c.value, c.kind, c.coinjoins) for c in cd2] == [(6_000_000, "coinjoin", 2)]
        all_txs = [tx for (_i, _a, tx) in joins.txs if tx.txid() != held_txid]
        assert len(all_txs) == 3
        assert_one_depth_per_wallet([depths2] + mrecs, all_txs)
        print(f"\nENGINE steps={[(st.depth, st.amount, st.cj_amount, st.attempts) for st in s.steps]}"
              f" held={held_txid} rerun={s2.txid} balances={bal}")
    finally:
        node.close_wallet(taker)


def test_engine_step_that_keeps_failing_stops_the_schedule_nothing_lost_then_resumes(
        bitcoind, electrum_node, make_wallet, tmp_path):
    """Issue 15: a failed step is retried with new makers (the ones each attempt blamed are
    ignored by the next, a sweep retries with one maker fewer down to the minimum); a step that
    keeps failing stops the schedule as ``failed`` with a message that says what to do, nothing
    of the step spent, the state on disk; resumed (here after a restart from that disk state),
    the same step runs again and the schedule completes, amounts exact."""
    node = electrum_node
    if node.config.get("plugins.joinmarket.enabled") is None:
        node.config.set_key("plugins.joinmarket.enabled", False)   # keep plugin data on close
    taker, dest, mrecs, joins = two_maker_world(
        node, bitcoind, make_wallet, [8_000_000, 3_000_000], [40_000_000])
    seen: list = []

    async def execute(req, progress):
        seen.append((req.attempt, dict(req.ignored_makers), req.counterparties, sorted(req.coins)))
        if req.attempt <= 3:              # three attempts in a row: makers vanish after !fill
            progress({"stage": "failed", "message": "makers silent"})
            return _Outcome("failed", f"maker J5bad{req.attempt} did not answer",
                            ignored_makers={f"J5bad{req.attempt}": "M10"})
        return await joins(req, progress)

    engine, depths = make_engine(node, taker, execute)
    coins_before = sorted(c.prevout.to_str() for c in taker.get_utxos())
    assert depths.balances()[0] == 11_000_000
    dest_addr = dest.get_receiving_addresses()[0]
    sched = Schedule(steps=[Step(0, 0, 3, dest_addr)], max_attempts=3, retry_wait=0.2)
    sched.validate(5)
    engine.store.save(sched)
    fut, s = drive(node, bitcoind, engine, sched.id, lambda s: s.status == ScheduleStatus.FAILED)
    fut.result(30)
    step = s.steps[0]
    assert step.attempts == 3 and step.status == StepStatus.PENDING and step.txid is None
    assert "step 1 failed 3 time(s)" in s.message and "maker J5bad3 did not answer" in s.message
    assert "still in depth 0" in s.message and "Resume" in s.message
    # every attempt was told the makers the earlier ones blamed; the sweep lost one maker
    # after the first failure, never below the minimum (2)
    assert [(a, sorted(ig), cp) for (a, ig, cp, _c) in seen] == [
        (1, [], 3), (2, ["J5bad1"], 2), (3, ["J5bad1", "J5bad2"], 2)]
    assert all(c == coins_before for (_a, _i, _cp, c) in seen)
    assert step.ignored_makers == {"J5bad1": "M10", "J5bad2": "M10", "J5bad3": "M10"}
    # nothing lost: no transaction built, every coin where it was, none left frozen
    assert joins.txs == [] and step.pending_txids == [] and step.commitments == []
    assert sorted(c.prevout.to_str() for c in taker.get_utxos()) == coins_before
    assert not any(taker.is_frozen_coin(c) for c in taker.get_utxos())
    assert depths.balances() == {0: 11_000_000, 1: 0, 2: 0, 3: 0, 4: 0}

    # Electrum restarts from what is on disk: the failed schedule is there as it was
    snap = kill_and_restart(node, taker, tmp_path, "failed", joins)
    taker, engine, depths = restart(node, snap, "schedule-failed-restart", joins, fut, taker)
    engine.execute = execute
    try:
        on_disk = engine.store.load(sched.id)
        assert on_disk.status == ScheduleStatus.FAILED and on_disk.message == s.message
        assert on_disk.steps[0].attempts == 3
        assert on_disk.steps[0].ignored_makers == step.ignored_makers
        # resumed: the same step runs again (attempt 4, the blamed makers still ignored) and
        # the schedule completes
        fut, s = drive(node, bitcoind, engine, sched.id, lambda s: s.status == ScheduleStatus.DONE)
        fut.result(30)
        step = s.steps[0]
        assert step.status == StepStatus.DONE and step.attempts == 4
        assert seen[-1][:3] == (4, {"J5bad1": "M10", "J5bad2": "M10", "J5bad3": "M10"}, 2)
        [(_i, _a, tx)] = joins.txs
        assert step.txid == tx.txid()
        assert {i.prevout.to_str() for i in tx.inputs()} >= set(coins_before)
        node.wait_tx(dest, step.txid, confirmations=1)
        assert dest.get_balance()[0] == step.cj_amount > 11_000_000 - 60_000
        assert depths.balances() == {0: 0, 1: 0, 2: 0, 3: 0, 4: 0}
        assert_one_depth_per_wallet([depths] + mrecs, [tx])
        print(f"\nENGINE FAILED-THEN-RESUMED attempts={[a for (a, *_r) in seen]} "
              f"cj_amount={step.cj_amount} txid={step.txid}")
    finally:
        node.close_wallet(taker)


def test_engine_address_added_later_and_wait_in_minutes(bitcoind, electrum_node, make_wallet):
    """Issue 15 schedules: a step whose destination is ``ADDRASK`` (an address the user adds
    later) stops the schedule as ``needs-address`` before anything of it runs; the service
    refuses an address of this wallet, a malformed one, and an address for a step that has
    one; with the address given, resume runs the step to that address — and not before the
    previous step's ``wait_minutes`` are over."""
    from electrum_joinmarket.schedule.model import ADDRASK, ScheduleError
    from electrum_joinmarket.schedule.service import ScheduleService
    node = electrum_node
    taker, dest, mrecs, joins = two_maker_world(
        node, bitcoind, make_wallet, [10_000_000, 4_000_000], [40_000_000])
    started: list = []

    async def execute(req, progress):
        started.append((req.index, time.time(), req.destination))
        return await joins(req, progress)

    engine, depths = make_engine(node, taker, execute)
    service = ScheduleService(taker, plugin_storage(taker), depths, engine.commitments,
                              execute=None)          # here only for set_destination
    sched = Schedule(steps=[Step(0, 7_000_000, 2, INTERNAL, wait_minutes=0.25),
                            Step(1, 0, 2, ADDRASK)], retry_wait=0.2)
    sched.validate(5)
    engine.store.save(sched)
    fut, s = drive(node, bitcoind, engine, sched.id,
                   lambda s: s.status == ScheduleStatus.NEEDS_ADDRESS)
    fut.result(30)
    assert s.current == 1 and s.steps[0].status == StepStatus.DONE
    assert s.steps[1].status == StepStatus.PENDING and s.steps[1].attempts == 0
    assert "step 2 needs a destination address" in s.message
    assert [i for (i, _t, _d) in started] == [0]              # step 2 never started
    not_before = s.not_before_time         # step 1's 15 s, saved with the schedule
    assert not_before is not None and not_before >= s.steps[0].done_at + 0.25 * 60
    # what the user may not give
    for bad, why in ((taker.get_receiving_addresses()[3], "belongs to this wallet"),
                     ("not-an-address", "not an address")):
        with pytest.raises(ScheduleError, match=why):
            service.set_destination(sched.id, 2, bad)
    with pytest.raises(ScheduleError, match="already has a destination"):
        service.set_destination(sched.id, 1, dest.get_receiving_addresses()[0])
    addr = dest.get_receiving_addresses()[0]
    given = service.set_destination(sched.id, 2, addr)
    assert time.time() < not_before           # resumed inside the wait: the wait is tested
    assert given.steps[1].destination_used == addr and "resume" in given.message
    # resumed: the step waits for the previous step's minutes, then pays the given address
    fut, s = drive(node, bitcoind, engine, sched.id, lambda s: s.status == ScheduleStatus.DONE)
    fut.result(30)
    assert [(i, d) for (i, _t, d) in started] == [(0, started[0][2]), (1, addr)]
    step1, step2 = s.steps
    assert started[1][1] >= not_before                        # the wait survived the stop
    assert step2.status == StepStatus.DONE and step2.attempts == 1
    node.wait_tx(dest, step2.txid, confirmations=1)
    assert dest.get_balance()[0] == step2.cj_amount > 7_000_000 - 60_000
    tx1 = [tx for (i, _a, tx) in joins.txs if i == 0][0]
    change1 = sum(o.value for o in tx1.outputs() if taker.is_mine(o.address)) - 7_000_000
    assert depths.balances() == {0: change1, 1: 0, 2: 0, 3: 0, 4: 0}
    assert_one_depth_per_wallet([depths] + mrecs, [tx for (_i, _a, tx) in joins.txs])
    print(f"\nENGINE ADDRASK waited={started[1][1] - step1.done_at:.1f}s "
          f"cj_amount={step2.cj_amount} txid={step2.txid}")


def test_engine_runs_a_generated_tumble_to_its_end(bitcoind, electrum_node, make_wallet):
    """Issue 15: a schedule made by the tumbler generator (the reference tumbler's algorithm;
    here its smallest shape: one funded depth, two depths mixed through, one destination) runs
    to its end with real transactions: stage 1 sweeps depth 0 to depth 1, stage 2 sweeps depth 1
    to depth 2, and the last depth sweeps everything to the user's address; each coinjoin spends
    one depth, and nothing is left in the wallet."""
    from electrum_joinmarket.schedule.tumbler import TumblerParams, generate_tumble
    node = electrum_node
    taker, dest, mrecs, joins = two_maker_world(
        node, bitcoind, make_wallet, [7_000_000, 3_000_000], [40_000_000] * 3)
    engine, depths = make_engine(node, taker, joins)
    dest_addr = dest.get_receiving_addresses()[0]
    params = TumblerParams(addrcount=1, makercountrange=(2.0, 0.0), minmakercount=2,
                           mixdepthcount=2, txcountparams=(1.0, 0.0), mintxcount=1,
                           timelambda=0.0, rounding_chance=0.0)
    sched = generate_tumble(params, [dest_addr], depths.balances(), depth_count=depths.count,
                            rng=random.Random(7))
    assert [(s.depth, s.amount, s.destination) for s in sched.steps] == [
        (0, 0, INTERNAL), (1, 0, INTERNAL), (2, 0, dest_addr)]
    sched.retry_wait = 0.2
    engine.store.save(sched)
    fut, s = drive(node, bitcoind, engine, sched.id, lambda s: s.status == ScheduleStatus.DONE,
                   timeout=400)
    fut.result(30)
    assert all(st.status == StepStatus.DONE and st.attempts == 1 for st in s.steps)
    txs = [tx for (_i, _a, tx) in joins.txs]
    assert [tx.txid() for tx in txs] == [st.txid for st in s.steps]
    for st, tx in zip(s.steps, txs, strict=True):
        assert depths.check_tx_inputs(tx) == st.depth
    # each sweep's coinjoin output is the next step's only coin: amounts chain down by fees
    assert s.steps[0].cj_amount < 10_000_000 and \
        s.steps[2].cj_amount < s.steps[1].cj_amount < s.steps[0].cj_amount
    node.wait_tx(dest, s.steps[2].txid, confirmations=1)
    assert dest.get_balance()[0] == s.steps[2].cj_amount > 10_000_000 - 150_000
    assert depths.balances() == {0: 0, 1: 0, 2: 0, 3: 0, 4: 0}
    assert_one_depth_per_wallet([depths] + mrecs, txs)
    print(f"\nENGINE TUMBLE cj_amounts={[st.cj_amount for st in s.steps]}")


def test_schedule_refuses_a_destination_of_another_script_type_when_made(
        bitcoind, electrum_node, make_wallet):
    """A coinjoin refuses a destination whose script type differs from the other outputs (it
    would single out the user's output; --allow_script_mismatch for one coinjoin). A schedule
    runs unattended: such an address is refused when the schedule is made or the address added
    (not after every attempt of the step failed), with what to give instead; this wallet's type
    is accepted."""
    from electrum_joinmarket.schedule.model import ADDRASK, ScheduleError
    from electrum_joinmarket.schedule.service import ScheduleService
    w = make_wallet()
    engine, depths = make_engine(electrum_node, w, None)
    service = ScheduleService(w, plugin_storage(w), depths, engine.commitments, execute=None)
    legacy = bitcoind.rpc("getnewaddress", "", "legacy", wallet="miner")
    taproot = bitcoind.rpc("getnewaddress", "", "bech32m", wallet="miner")
    same = bitcoind.rpc("getnewaddress", "", "bech32", wallet="miner")
    for addr, kind in ((legacy, "legacy"), (taproot, "taproot")):
        steps = [{"depth": 0, "amount": 1_000_000, "counterparties": 2, "destination": INTERNAL},
                 {"depth": 1, "amount": 0, "counterparties": 2, "destination": addr}]
        with pytest.raises(ScheduleError, match=rf"step 2: the destination is a {kind} .*"
                                                r"give a native segwit"):
            service.create(steps=steps)
    assert service.store.all() == []                        # nothing saved
    ok = service.create(steps=[{"depth": 0, "amount": 0, "counterparties": 2,
                                "destination": same}])
    asked = service.create(steps=[{"depth": 0, "amount": 0, "counterparties": 2,
                                   "destination": ADDRASK}])
    with pytest.raises(ScheduleError, match="step 1: the destination is a legacy"):
        service.set_destination(asked.id, 1, legacy)
    assert service.store.load(asked.id).steps[0].destination_used in (None, "")
    assert service.set_destination(asked.id, 1, same).steps[0].destination_used == same
    assert {s.id for s in service.store.all()} == {ok.id, asked.id}


def test_f5_stop_while_waiting_for_a_confirmation_needs_no_cancel(bitcoind, electrum_node,
                                                                  make_wallet):
    """F5 at the schedule level: a stop request (``request_stop``, what ScheduleService.stop
    sets before it cancels the task) ends the wait for a broadcast step's confirmation by
    itself — the task's cancellation may have been lost on the way (a failed run sat in this
    wait for ever). The schedule is stopped, the step stays ``broadcast`` with its txid;
    resumed, the engine waits for that same transaction (never builds another) and completes."""
    import concurrent.futures
    node = electrum_node
    taker, dest, mrecs, joins = two_maker_world(
        node, bitcoind, make_wallet, [8_000_000, 2_000_000], [40_000_000])
    engine, depths = make_engine(node, taker, joins)
    dest_addr = dest.get_receiving_addresses()[0]
    sched = Schedule(steps=[Step(0, 5_000_000, 2, dest_addr)], retry_wait=0.2)
    sched.validate(5)
    engine.store.save(sched)
    fut, s = drive(node, bitcoind, engine, sched.id,
                   lambda s: s.steps[0].status == StepStatus.BROADCAST and "to confirm" in s.message,
                   mine_when=lambda s: s.steps[0].status != StepStatus.BROADCAST)
    txid = s.steps[0].txid
    assert txid and [t.txid() for (_i, _a, t) in joins.txs] == [txid]
    try:
        engine.request_stop()                     # the flag alone: the task is not cancelled
        with pytest.raises(concurrent.futures.CancelledError):
            fut.result(10)                        # engine.run re-raises its stop as a cancel
    finally:
        fut.cancel()
    s = engine.store.load(sched.id)
    assert s.status == ScheduleStatus.STOPPED and "stopped by the user" in s.message
    assert s.steps[0].status == StepStatus.BROADCAST and s.steps[0].txid == txid
    assert s.steps[0].attempts == 1 and s.current == 0
    # resumed: waits for the same transaction, then the schedule is done
    fut, s = drive(node, bitcoind, engine, sched.id, lambda s: s.status == ScheduleStatus.DONE)
    fut.result(30)
    step = s.steps[0]
    assert step.status == StepStatus.DONE and step.txid == txid and step.attempts == 1
    assert len(joins.txs) == 1                    # never built again
    node.wait_tx(dest, txid, confirmations=1)
    assert dest.get_balance()[0] == step.cj_amount == 5_000_000


def test_waits_end_on_electrums_events_not_on_the_poll(bitcoind, electrum_node, make_wallet):
    """Issue 13.2: the engine's waits (blocks, confirmations, the PoDLE age) end when Electrum
    reports a new block or a wallet change, not at the next poll: with a 600 s poll a schedule
    whose steps wait for blocks still runs to its end in well under that, one block mined at a
    time as it asks; and a stop request ends a wait at once."""
    import concurrent.futures
    node = electrum_node
    taker, dest, mrecs, joins = two_maker_world(
        node, bitcoind, make_wallet, [20_000_000, 6_000_000], [40_000_000, 40_000_000])
    engine, depths = make_engine(node, taker, joins, poll=600)
    dest_addr = dest.get_receiving_addresses()[0]
    sched = Schedule(steps=[Step(0, 12_000_000, 2, INTERNAL, wait_blocks=2),
                            Step(1, 0, 2, dest_addr)], retry_wait=0.2)
    sched.validate(5)
    engine.store.save(sched)
    fut, s = drive(node, bitcoind, engine, sched.id, lambda s: s.status == ScheduleStatus.DONE,
                   timeout=120)
    fut.result(10)
    assert [st.status for st in s.steps] == [StepStatus.DONE, StepStatus.DONE]
    assert s.steps[1].confirmed_height >= s.steps[0].confirmed_height + 2     # wait_blocks held
    # a stop request wakes the wait it finds (here: for a block nobody mines)
    stop = Schedule(steps=[Step(0, 2_000_000, 2, dest_addr)], retry_wait=0.2)
    stop.validate(5)
    stop.not_before_height = taker.adb.get_local_height() + 100
    engine.store.save(stop)
    fut, s = drive(node, bitcoind, engine, stop.id, lambda s: "waiting for block" in s.message,
                   mine_when=lambda s: False)
    engine.request_stop()
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result(10)
    assert engine.store.load(stop.id).status == ScheduleStatus.STOPPED
