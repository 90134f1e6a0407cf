"""Issue 14.6 as a user meets it: honest reasons, early, and no retries that cannot help.
Exact one-line messages, exit 1, nothing broadcast or frozen, and no history for coinjoins
that never reached a maker."""
from __future__ import annotations

import re

import pytest

from .harness import fund, spendable_and_all

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

NICK = r"J5[0-9A-Za-z]{14}"


def _no_history_no_frozen(user, wallet):
    assert user.ok("joinmarket_history", "-w", wallet).json() == []
    address = user.rpc("getunusedaddress", wallet=wallet)
    spendable, every = spendable_and_all(user, wallet, address)
    assert spendable == every


def test_fee_limits_below_every_offer_fail_after_one_orderbook_naming_the_cheapest(user, wallet):
    dest = user.rpc("getunusedaddress", wallet=wallet)
    r = user.run("joinmarket_coinjoin", dest, "0.05", "-w", wallet, "--max_cj_fee_abs", "100",
                 "--max_cj_fee_rel", "0.00001", "--wait")
    assert r.returncode == 1, r
    m = re.fullmatch(
        rf"coinjoin (cj-[0-9a-f]{{8}}) failed: your fee limits exclude every offer for this "
        rf"coinjoin of 5 000 000 sat: the cheapest maker \(({NICK})\) asks 1 000 sat, you allow "
        rf"at most 100 sat per maker \(above both 100 sat and 0\.00001 of the amount is "
        rf"refused\); raise plugins\.joinmarket\.max_cj_fee_abs or max_cj_fee_rel, or pass "
        rf"--max_cj_fee_abs/--max_cj_fee_rel", r.err_lines[-1])
    assert m, r
    stages = [line.split("] ", 1)[1].split(":")[0] for line in r.err_lines[:-1]]
    assert "retry" not in stages and "fill" not in stages, r.stderr      # one round, no maker
    _no_history_no_frozen(user, wallet)


def test_too_few_makers_for_minimum_makers_names_the_setting(user, wallet, settings):
    settings(counterparties=4, minimum_makers=4)
    dest = user.rpc("getunusedaddress", wallet=wallet)
    r = user.run("joinmarket_coinjoin", dest, "0.05", "-w", wallet, "--wait")
    assert r.returncode == 1, r
    assert re.fullmatch(r"coinjoin cj-[0-9a-f]{8} failed: only 3 of the 3 makers in the orderbook "
                        r"can take this coinjoin of 5 000 000 sat, 4 needed \(setting "
                        r"plugins\.joinmarket\.minimum_makers = 4\)", r.err_lines[-1]), r
    assert "] retry:" not in r.stderr
    _no_history_no_frozen(user, wallet)


def test_amount_below_every_makers_minimum(user, wallet):
    dest = user.rpc("getunusedaddress", wallet=wallet)
    r = user.run("joinmarket_coinjoin", dest, "0.0005", "-w", wallet, "--wait")
    assert r.returncode == 1, r
    assert re.fullmatch(r"coinjoin cj-[0-9a-f]{8} failed: the amount 50 000 sat is below every "
                        r"maker's minimum: the smallest minimum in the orderbook is 100 001 sat",
                        r.err_lines[-1]), r
    _no_history_no_frozen(user, wallet)


def test_no_podle_coin_and_syncing_are_said_before_any_orderbook_wait(user, bitcoind):
    """A coin too young for the PoDLE commitment: one line before anything starts (no job)."""
    wallet = user.create_wallet("young")
    addr = user.rpc("getunusedaddress", wallet=wallet)
    bitcoind.fund(addr, 10_000_000, confirm=False)
    bitcoind.mine(2)
    user.wait_balance(wallet, 10_000_000)
    dest = user.rpc("getunusedaddress", wallet=wallet)
    r = user.run("joinmarket_coinjoin", dest, "0.02", "-w", wallet, "--wait")
    assert r.returncode == 1 and r.err_lines == [
        "no coin can back the PoDLE commitment makers require yet: it needs 5 confirmations and "
        "your coins of at least 400000 sat have 2; wait about 3 more block(s)"], r
    r = user.run("joinmarket_progress", "-w", wallet)
    assert r.returncode == 1 and r.err_lines[0].startswith("no coinjoin has run in this wallet")
    # small coins only: the size rule is named
    small = user.create_wallet("small")
    fund(user, small, bitcoind, (1_000_000,) * 6)
    r = user.run("joinmarket_coinjoin", dest, "0.055", "-w", small)
    assert r.returncode == 1 and r.err_lines == [
        "no coin can back the PoDLE commitment makers require: it must be worth at least 20% of "
        "the amount (1100000 sat) and your largest confirmed coin has 1000000 sat; lower the "
        "amount or add a larger coin"], r


def test_json_output_keeps_non_ascii_text(user, settings):
    settings(daemon_datadir="/tmp/jm-≥-dæmon")
    r = user.ok("joinmarket_status")
    assert '"daemon_datadir": "/tmp/jm-≥-dæmon"' in r.stdout and "\\u2265" not in r.stdout, r
