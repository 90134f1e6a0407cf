"""A 3-step schedule through the plugin's headless commands (joinmarket_schedule_create /
start / status / stop), with real Electrum wallets and our Electrum makers over jmdaemon and a
real IRC server on the regtest stack: 12M sats from depth 0 to the next depth (INTERNAL), half of
depth 1 to depth 2 (INTERNAL), then a sweep of depth 1 to another wallet.  Stopped and resumed
between steps.  Amounts and depths exact; every transaction of the run checked: no wallet's
coins of two depths in one transaction (taker and every maker)."""
from __future__ import annotations

import time

import pytest

from devstack.daemons import plugin_on_daemon
from devstack.ircd import irc_config
from devstack.wallets import new_wallet

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


@pytest.fixture
def configured(electrum_node, irc_net, ircd, tmp_path):
    with plugin_on_daemon(electrum_node.config, tmp_path, "sched-taker",
                          irc_config(ircd)) as daemon:
        yield daemon


def run_until(electrum_node, bitcoind, cmds, wallet, sid, pred, timeout=600):
    """Poll joinmarket_schedule_status; mine a block whenever the schedule waits for blocks or
    confirmations; return the status once ``pred(status)``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        st = electrum_node.run(cmds.joinmarket_schedule_status(wallet=wallet, schedule_id=sid))
        if pred(st):
            return st
        if st["status"] in ("failed", "done", "stopped") and not pred(st):
            raise AssertionError(f"schedule ended as {st['status']}: {st['message']}")
        if st["message"] != last:
            print(f"  [{time.strftime('%H:%M:%S')}] {st['status']}: {st['message']}")
            last = st["message"]
        if "waiting for" in st["message"]:
            bitcoind.mine(1)
        time.sleep(1.0)
    raise AssertionError(f"timeout; last status {last}")


def test_three_step_schedule_through_the_commands(electrum_node, bitcoind, irc_net, configured,
                                                 plugins_factory):
    config = electrum_node.config
    config.set_key("plugins.joinmarket.enabled", True)
    old_plugins = electrum_node.daemon._plugins
    electrum_node.daemon._plugins = plugins_factory(config, "cmdline")
    try:
        taker = new_wallet(electrum_node, bitcoind, [20_000_000, 6_000_000], confirmations=6)
        dest = new_wallet(electrum_node, bitcoind)
        dest_addr = dest.get_receiving_addresses()[0]
        cmds = electrum_node.commands()
        steps = [{"depth": 0, "amount": 12_000_000, "counterparties": 3,
                  "destination": "INTERNAL", "wait_blocks": 1},
                 {"depth": 1, "amount": "0.5", "counterparties": 2, "destination": "INTERNAL"},
                 {"depth": 1, "amount": 0, "counterparties": 2, "destination": dest_addr}]
        created = electrum_node.run(cmds.joinmarket_schedule_create(
            wallet=taker, steps=steps, name="e2e"))
        sid = created["id"]
        assert created["status"] == "new" and created["steps_total"] == 3
        assert [s["status"] for s in created["steps"]] == ["pending"] * 3
        started = electrum_node.run(cmds.joinmarket_schedule_start(sid, wallet=taker))
        assert started["id"] == sid

        # step 1 done; stop while the schedule waits for its block, then resume
        st = run_until(electrum_node, bitcoind, cmds, taker, sid,
                       lambda s: s["steps"][0]["status"] == "done")
        stop = electrum_node.run(cmds.joinmarket_schedule_stop(wallet=taker), timeout=90)
        assert stop["stopped"] is True and stop["status"]["status"] == "stopped"
        assert stop["status"]["steps"][1]["status"] in ("pending", "running")
        again = electrum_node.run(cmds.joinmarket_schedule_start(sid, wallet=taker))
        assert again["id"] == sid
        st = run_until(electrum_node, bitcoind, cmds, taker, sid,
                       lambda s: s["status"] == "done")
        s0, s1, s2 = st["steps"]

        # amounts and depths, exact
        assert s0["cj_amount"] == 12_000_000 and s1["cj_amount"] == 6_000_000
        assert all(s["status"] == "done" and s["txid"] for s in (s0, s1, s2))
        for s in (s0, s1, s2):
            electrum_node.wait_tx(taker, s["txid"], confirmations=1)
        electrum_node.wait_tx(dest, s2["txid"], confirmations=1)
        assert dest.get_balance()[0] == s2["cj_amount"]
        depths = electrum_node.run(cmds.joinmarket_depths(wallet=taker))
        by_depth = {d["depth"]: d for d in depths["depths"]}
        assert by_depth[1]["confirmed"] == 0 and by_depth[1]["coins"] == []
        assert [(c["value"], c["kind"], c["coinjoins"]) for c in by_depth[2]["coins"]] == \
            [(6_000_000, "coinjoin", 2)]
        tx0 = taker.adb.get_transaction(s0["txid"])
        change0 = sum(o.value for o in tx0.outputs() if taker.is_mine(o.address)) - 12_000_000
        # step 1 needed only the 20M coin (largest first): depth 0 = its change + the 6M deposit
        assert by_depth[0]["confirmed"] == change0 + 6_000_000
        assert sorted(c["kind"] for c in by_depth[0]["coins"]) == ["cj-change", "deposit"]
        assert depths["merges"] == []
        # the sweep spent every coin of depth 1: step 2's change and step 1's... nothing else
        tx2 = taker.adb.get_transaction(s2["txid"])
        session = electrum_node.daemon._plugins.get("joinmarket").session_for(taker)
        assert session.depths.check_tx_inputs(tx2) == 1

        # every transaction of the run: no wallet (taker, makers) spent two depths in it
        maker_inputs = []
        for s in (s0, s1, s2):
            tx = taker.adb.get_transaction(s["txid"])
            assert session.depths.check_tx_inputs(tx) == s["depth"]
            in_tx = [p.maker.depths.check_tx_inputs(tx) for p in irc_net.makers]   # raises
            maker_inputs.append(sum(d is not None for d in in_tx))
        assert all(n >= 2 for n in maker_inputs)     # every coinjoin had ≥ 2 of our makers
        hist = electrum_node.run(cmds.joinmarket_history(wallet=taker))
        assert {h["txid"] for h in hist if h["status"] == "success"} >= {s0["txid"], s1["txid"],
                                                                        s2["txid"]}
        print(f"\nSCHEDULE E2E {sid}: " + "; ".join(
            f"step{i + 1} depth {s['depth']} cj {s['cj_amount']} tx {s['txid'][:16]} "
            f"attempts {s['attempts']}" for i, s in enumerate((s0, s1, s2)))
            + f"; depths {[(d['depth'], d['confirmed']) for d in depths['depths']]}")
    finally:
        electrum_node.daemon._plugins = old_plugins
        config.set_key("plugins.joinmarket.enabled", False)

