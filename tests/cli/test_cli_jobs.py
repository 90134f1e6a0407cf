"""Issue 14.1-14.3 and F8, as a user meets them: the real ``electrum`` CLI against an ``electrum
daemon`` subprocess with the plugin, coinjoining with three makers on the regtest stack.

Each test checks what the user sees (exit status, exact lines) against the chain (bitcoind: what
was or was not broadcast) and the wallet (no coin left frozen: a max-amount payment would spend
every unspent coin)."""
from __future__ import annotations

import re
import time

import pytest

from .harness import spendable_and_all, unspent_on_chain, wait_line

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

JOB_RE = r"cj-[0-9a-f]{8}"


def _prefix(user) -> str:
    return f"electrum --regtest -D {user.datadir}"


def _assert_clean(user, wallet, bitcoind, coins_before: set) -> None:
    """Nothing of ours broadcast, every coin still ours and unspent, none frozen."""
    time.sleep(3)                                   # a late broadcast would show up by now
    assert unspent_on_chain(bitcoind, coins_before) == coins_before
    dest = user.rpc("getunusedaddress", wallet=wallet)
    spendable, every = spendable_and_all(user, wallet, dest)
    assert every == coins_before
    assert spendable == every, f"frozen: {every - spendable}"


def test_coinjoin_answers_with_a_job_then_progress_wait_follows_it(user, wallet, bitcoind):
    """14.1: the command answers at once with a job id and how to follow/cancel it; progress
    --wait follows it (one line per change on stderr) to the outcome; history and the chain
    agree."""
    dest = user.rpc("getunusedaddress", wallet=wallet)
    r = user.ok("joinmarket_coinjoin", dest, "0.05", "-w", wallet)
    job = r.json()
    assert re.fullmatch(JOB_RE, job["job"]) and job["state"] == "running", r
    assert job["follow"] == f"{_prefix(user)} joinmarket_progress -w {wallet} --wait"
    assert job["cancel"] == f"{_prefix(user)} joinmarket_cancel -w {wallet}"
    assert job["request"]["amount"] == 5_000_000 and job["request"]["destination"] == dest
    # the hint works as written (argv split like a shell would)
    r = user.ok("joinmarket_progress", "-w", wallet, "--wait")
    done = r.json()
    assert done["job"] == job["job"] and done["state"] == "success", r
    out = done["outcome"]
    stages = [re.match(r"\[\s*[\d.]+s\] ([a-z-]+):", line).group(1) for line in r.err_lines]
    assert stages[0] == "connect" and stages[-1] == "done", r.stderr
    assert stages.count("orderbook") <= 3, r.stderr        # one line per change, not per second
    assert {"orderbook", "chosen", "fill", "ioauth", "tx", "sigs", "broadcast"} <= set(stages)
    # the chain: the coinjoin pays dest exactly, among anonymity_set equal outputs
    tx = bitcoind.rpc("getrawtransaction", out["txid"], True)
    values = [int(round(float(o["value"]) * 1e8)) for o in tx["vout"]]
    assert values.count(5_000_000) == out["anonymity_set"] == 4
    assert any(o["scriptPubKey"].get("address") == dest and int(round(float(o["value"]) * 1e8))
               == 5_000_000 for o in tx["vout"])
    hist = user.ok("joinmarket_history", "-w", wallet).json()
    assert [(h["txid"], h["status"]) for h in hist] == [(out["txid"], "success")]
    bitcoind.mine(1)
    user.wait_balance(wallet, 1)
    spendable, every = spendable_and_all(user, wallet, dest)
    assert spendable == every                                  # nothing left frozen


def test_coinjoin_wait_follows_to_the_end_and_exits_0(user, wallet, bitcoind):
    dest = user.rpc("getunusedaddress", wallet=wallet)
    r = user.ok("joinmarket_coinjoin", dest, "0.04", "-w", wallet, "--wait")
    res = r.json()
    assert res["state"] == "success" and res["outcome"]["cj_amount"] == 4_000_000, r
    assert "lines" not in res                                  # they went to stderr, once
    assert r.err_lines[-1].split("] ", 1)[1].startswith(f"done: coinjoin {res['outcome']['txid']}")
    assert bitcoind.rpc("getmempoolentry", res["outcome"]["txid"])


def test_joinmarket_cancel_stops_it_before_anything_is_signed(quiet_user, quiet_wallet, bitcoind):
    """14.1: joinmarket_cancel -w WALLET cancels the running coinjoin; nothing broadcast, no
    coin frozen; it never reached a maker, so it is not history; a second cancel says there is
    nothing to cancel."""
    user, wallet = quiet_user, quiet_wallet      # its coinjoins wait for offers that never come
    coins = {f"{c['prevout_hash']}:{c['prevout_n']}" for c in user.rpc("listunspent", wallet=wallet)}
    dest = user.rpc("getunusedaddress", wallet=wallet)
    job = user.ok("joinmarket_coinjoin", dest, "0.05", "-w", wallet).json()["job"]
    # while it runs, the wallet is busy and says how to follow or cancel
    r = user.run("joinmarket_coinjoin", dest, "0.01", "-w", wallet)
    assert r.returncode == 1 and r.err_lines == [
        f"this wallet is busy: coinjoin {job} is running; follow it with "
        f"'{_prefix(user)} joinmarket_progress -w {wallet} --wait' or cancel it with "
        f"'{_prefix(user)} joinmarket_cancel -w {wallet}'"], r
    r = user.ok("joinmarket_cancel", "-w", wallet)
    res = r.json()
    assert res["job"] == job and res["state"] == "cancelled", r
    assert res["message"] == (f"coinjoin {job} cancelled: nothing of yours was signed or "
                              f"broadcast; coins unfrozen")
    _assert_clean(user, wallet, bitcoind, coins)
    assert user.ok("joinmarket_history", "-w", wallet).json() == []
    r = user.run("joinmarket_cancel", "-w", wallet)
    assert r.returncode == 1 and r.err_lines == ["no coinjoin is running in this wallet"], r
    r = user.run("joinmarket_progress", "-w", wallet, "--wait")
    assert r.returncode == 1 and r.err_lines[-1] == res["message"], r


def test_f8_ctrl_c_on_a_waiting_client_cancels_the_coinjoin(quiet_user, quiet_wallet, bitcoind):
    """14.2/F8: Ctrl-C (SIGINT) on `joinmarket_coinjoin --wait` cancels the coinjoin and says
    so: exit 1, one line, no traceback, no hang; nothing broadcast, no coin frozen."""
    user, wallet = quiet_user, quiet_wallet
    coins = {f"{c['prevout_hash']}:{c['prevout_n']}" for c in user.rpc("listunspent", wallet=wallet)}
    dest = user.rpc("getunusedaddress", wallet=wallet)
    client = user.start("joinmarket_coinjoin", dest, "0.05", "-w", wallet, "--wait")
    wait_line(client, "] orderbook: ")
    client.interrupt()
    r = client.wait(60)
    assert r.returncode == 1, r
    assert "Traceback" not in r.stderr and "KeyboardInterrupt" not in r.stderr, r
    job = re.search(JOB_RE, r.err_lines[-1]).group(0)
    assert r.err_lines[-2:] == ["Ctrl-C: cancelling the coinjoin…",
                                f"coinjoin {job} cancelled: nothing of yours was signed or "
                                f"broadcast; coins unfrozen"], r
    assert r.stdout == ""
    assert user.ok("joinmarket_progress", "-w", wallet).json()["state"] == "cancelled"
    _assert_clean(user, wallet, bitcoind, coins)


def test_f8_ctrl_c_on_progress_wait_cancels_too(quiet_user, quiet_wallet, bitcoind):
    user, wallet = quiet_user, quiet_wallet
    coins = {f"{c['prevout_hash']}:{c['prevout_n']}" for c in user.rpc("listunspent", wallet=wallet)}
    dest = user.rpc("getunusedaddress", wallet=wallet)
    job = user.ok("joinmarket_coinjoin", dest, "0.05", "-w", wallet).json()["job"]
    client = user.start("joinmarket_progress", "-w", wallet, "--wait")
    wait_line(client, "] orderbook: ")
    client.interrupt()
    r = client.wait(60)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r
    assert r.err_lines[-1] == (f"coinjoin {job} cancelled: nothing of yours was signed or "
                               f"broadcast; coins unfrozen"), r
    _assert_clean(user, wallet, bitcoind, coins)


def test_input_mistakes_exit_1_in_one_line_and_are_not_history(user, wallet):
    """14.3: a typo in the address exits 1 with one line and leaves no history entry."""
    r = user.run("joinmarket_coinjoin", "bcrt1qtypo", "0.05", "-w", wallet, "--wait")
    assert r.returncode == 1 and r.err_lines == [
        "'bcrt1qtypo' is not a valid address for this network"], r
    r = user.run("joinmarket_coinjoin", user.rpc("getunusedaddress", wallet=wallet),
                 "5", "-w", wallet)
    assert r.returncode == 1 and r.err_lines == [
        "amount 500000000 sat is not below the spendable balance 26000000 sat (fees must fit "
        "too); use sweep (amount 0) to spend all"], r
    assert user.ok("joinmarket_history", "-w", wallet).json() == []
    r = user.run("joinmarket_progress", "-w", wallet)
    assert r.returncode == 1 and r.err_lines == [
        f"no coinjoin has run in this wallet since Electrum started; past ones: "
        f"'{_prefix(user)} joinmarket_history -w {wallet}'"], r
