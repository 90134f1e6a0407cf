"""Issue 14.11 on the command line: the maker's offer settings are remembered per wallet, its
earnings are kept (joinmarket_history shows the maker side) and checked against the wallet's
balance, and with --autostart true it comes back when Electrum restarts and loads the wallet;
a maker on an empty wallet is one line."""
from __future__ import annotations

import time

import pytest

from devstack.jmnet import quick_config
from electrum_joinmarket.protocol.commitments import CommitmentStore

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def _sats(btc: str) -> int:
    from decimal import Decimal
    return int(Decimal(btc) * 100_000_000)


def _wait(pred, timeout=120, what=""):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_maker_remembers_earns_and_autostarts(cli_net, funded_user, electrum_node, bitcoind):
    user, wallet = funded_user(amounts=(5_000_000, 4_000_000))
    r = user.ok("joinmarket_start_maker", "-w", wallet, "--ordertype", "absoffer", "--cjfee_a",
                "600", "--autostart", "true")
    st = r.json()
    assert st["running"] is True and st["autostart"] is True
    assert st["settings"] == {"ordertype": "absoffer", "cjfee_r": "0.00002", "cjfee_a": 600,
                              "txfee": 0, "minsize": 100000}
    nick = st["nick"]
    assert st["offers"][0]["ordertype"] == "sw0absoffer" and int(st["offers"][0]["cjfee"]) == 600
    # stop, start without options: the same offer
    assert user.ok("joinmarket_stop_maker", "-w", wallet).json()["stopped"] is True
    st = user.ok("joinmarket_start_maker", "-w", wallet).json()
    assert st["offers"][0]["ordertype"] == "sw0absoffer" and int(st["offers"][0]["cjfee"]) == 600
    nick = st["nick"]

    # a taker coinjoins with all four makers: ours earns exactly its fee
    before = _sats(user.rpc("getbalance", wallet=wallet)["confirmed"])
    taker_w = electrum_node.create_wallet(f"cli-taker-{time.monotonic_ns()}")
    bitcoind.fund(taker_w.get_receiving_addresses()[0], 9_000_000, confirm=False)
    bitcoind.mine(6)
    electrum_node.wait(lambda: taker_w.get_balance()[0] == 9_000_000, 60, "taker funded")
    run = cli_net.taker(taker_w, CommitmentStore({}),
                        quick_config(2_000_000, taker_w.get_receiving_addresses()[1], n=4))
    outcome = cli_net.run_taker(run)
    assert outcome.status == "success" and nick in outcome.makers, outcome
    assert outcome.maker_fees[nick] == 600
    bitcoind.mine(1)
    user.wait_balance(wallet, before + 600)
    assert _sats(user.rpc("getbalance", wallet=wallet)["confirmed"]) - before == 600
    # polled through the daemon as the client sends it (a client process is ~1 s of CPU)
    _wait(lambda: [h for h in user.rpc("joinmarket_history", wallet=wallet)
                   if h.get("role") == "maker"], what="maker history")
    hist = [h for h in user.ok("joinmarket_history", "-w", wallet).json() if h.get("role") == "maker"]
    assert [(h["txid"], h["earned"], h["cj_amount"]) for h in hist] == [(outcome.txid, 600, 2_000_000)]

    # Electrum restarts: loading the wallet starts the maker again, with the same offer
    assert user.stop_daemon() == 0
    user.start_daemon()
    user.rpc("load_wallet", wallet=wallet)

    def running():
        s = [x for x in user.rpc("joinmarket_status")["sessions"] if x["wallet"] == wallet.name]
        return s and s[0]["maker"] and s[0]["maker"]["running"] and s[0]["maker"]
    _wait(running, what="maker auto-start after the restart")
    (s,) = [x for x in user.ok("joinmarket_status").json()["sessions"] if x["wallet"] == wallet.name]
    maker = s["maker"]
    assert maker["offers"][0]["ordertype"] == "sw0absoffer" and int(maker["offers"][0]["cjfee"]) == 600
    assert [h["txid"] for h in user.ok("joinmarket_history", "-w", wallet).json()] == [outcome.txid]
    # --autostart false on the stop: the next start of Electrum leaves it stopped
    st = user.ok("joinmarket_stop_maker", "-w", wallet, "--autostart", "false").json()
    assert st["stopped"] is True and st["autostart"] is False and st["earned_total"] == 600
    assert user.stop_daemon() == 0
    user.start_daemon()
    user.rpc("load_wallet", wallet=wallet)
    time.sleep(5)
    (s,) = [x for x in user.ok("joinmarket_status").json()["sessions"] if x["wallet"] == wallet.name]
    assert s["role"] is None and s["maker"] is None


def test_maker_on_an_empty_wallet_is_one_line(make_user):
    user = make_user("empty")
    user.start_daemon()
    wallet = user.create_wallet("empty")
    r = user.run("joinmarket_start_maker", "-w", wallet)
    assert r.returncode == 1 and r.err_lines == [
        "no offer possible: the wallet's confirmed balance is below the minimum size (100000 sat) "
        "plus dust; fund the wallet (coins need 1 confirmation) or lower --minsize"], r
