"""Issue 14.4/14.5 as a user meets them: settings typed as users type them (`setconfig
plugins.joinmarket.max_cj_fee_rel 0.004`, offline and through the daemon), one-line errors for
invalid values (exit 1, nothing stored), and messages whose suggested commands work as written."""
from __future__ import annotations

import re
import shlex

import pytest

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def _stored(user) -> dict:
    return user.read_config()["plugins"]["joinmarket"]


VALID = (("max_cj_fee_rel", "0.004", "0.004"), ("max_cj_fee_rel", "0.4%", "0.004"),
         ("max_cj_fee_rel", "0.00015", "0.00015"), ("max_cj_fee_abs", "20000", 20000),
         ("orderbook_wait", "30", 30), ("bondless_makers_allowance", "0.125", "0.125"),
         ("max_cj_fee_rel", "1", "1"))
INVALID = (
    ("max_cj_fee_rel", "1.5", "plugins.joinmarket.max_cj_fee_rel: The relative fee limit is "
     "a fraction of the amount between 0 and 1, e.g. 0.004 (or 0.4%) (got '1.5')"),
    ("max_cj_fee_rel", "abc", "plugins.joinmarket.max_cj_fee_rel: The relative fee limit is "
     "a fraction of the amount between 0 and 1, e.g. 0.004 (or 0.4%) (got 'abc')"),
    ("max_cj_fee_abs", "12.5", "plugins.joinmarket.max_cj_fee_abs: The absolute fee limit "
     "is a whole number of sats per maker, e.g. 20000 (got '12.5')"),
    ("orderbook_wait", "2.5", "plugins.joinmarket.orderbook_wait: must be a whole number, "
     "e.g. 60 (got '2.5')"),
    ("daemon_autostart", "maybe", "plugins.joinmarket.daemon_autostart: must be true or "
     "false (got 'maybe')"))


def _cli_set(user, pre, key, typed, stored) -> None:
    r = user.ok(*pre, "setconfig", f"plugins.joinmarket.{key}", typed)
    assert r.stdout.strip() in ("", "true"), r
    assert _stored(user)[key] == stored, typed


def _cli_refused(user, pre, key, typed, line) -> None:
    before = _stored(user)
    r = user.run(*pre, "setconfig", f"plugins.joinmarket.{key}", typed)
    assert r.returncode == 1 and r.err_lines == [line], r
    assert _stored(user) == before


def test_setconfig_takes_numbers_as_typed(make_user):
    """Both ways a user's ``setconfig`` runs: ``--offline`` (the client process sets it) and
    through the daemon (the client sends the typed string; the daemon decodes and stores it).
    Each way runs the real ``electrum`` command for a kept and a refused value; the rest of the
    table goes to the daemon as the client sends it (``run_cmdline`` with the typed string), which
    is the same request without starting a client process (~1 s of CPU each) per value. The
    per-setting rules themselves are tests/unit/test_setconfig_values.py."""
    from .harness import DaemonRPCError
    user = make_user(max_cj_fee_abs=None, max_cj_fee_rel=None)
    # offline: the client process runs the command
    _cli_set(user, ["--offline"], "max_cj_fee_rel", "0.4%", "0.004")
    _cli_set(user, ["--offline"], "max_cj_fee_abs", "20000", 20000)
    _cli_refused(user, ["--offline"], *INVALID[0])
    _cli_refused(user, ["--offline"], *INVALID[-1])
    # through the daemon
    user.start_daemon()
    _cli_set(user, [], "max_cj_fee_rel", "0.00015", "0.00015")
    _cli_refused(user, [], *INVALID[2])
    for key, typed, stored in VALID:
        user.rpc("setconfig", key=f"plugins.joinmarket.{key}", value=typed)
        assert _stored(user)[key] == stored, typed
    for key, typed, line in INVALID:
        before = _stored(user)
        with pytest.raises(DaemonRPCError) as e:
            user.rpc("setconfig", key=f"plugins.joinmarket.{key}", value=typed)
        assert str(e.value) == f"setconfig: {line}"
        assert _stored(user) == before
    st = user.ok("joinmarket_status").json()["settings"]
    assert (st["max_cj_fee_rel"], st["max_cj_fee_abs"], st["orderbook_wait"]) == ("1", 20000, 30)


def test_unset_fee_limits_say_how_to_set_them_and_the_commands_work(make_user, bitcoind):
    """FeeLimitsUnset names the exact setconfig commands for this Electrum; run as written,
    they set the limits (with the user's values in place of the examples)."""
    from .harness import fund
    user = make_user(max_cj_fee_abs=None, max_cj_fee_rel=None)
    user.start_daemon()
    wallet = user.create_wallet("w1")
    fund(user, wallet, bitcoind, (10_000_000,))
    dest = user.rpc("getunusedaddress", wallet=wallet)
    r = user.run("joinmarket_coinjoin", dest, "0.02", "-w", wallet)
    prefix = f"electrum --regtest -D {user.datadir}"
    assert r.returncode == 1 and r.err_lines == [
        f"coinjoin fee limits are not set: a maker is refused only if its fee is above both; set "
        f"them with '{prefix} setconfig plugins.joinmarket.max_cj_fee_rel 0.004' and '{prefix} "
        f"setconfig plugins.joinmarket.max_cj_fee_abs 20000' (your values), or give "
        f"--max_cj_fee_rel and --max_cj_fee_abs to this command"], r
    for cmd in re.findall(r"'(electrum [^']+)'", r.err_lines[0]):
        assert user.run_line(cmd).returncode == 0, cmd
    assert (_stored(user)["max_cj_fee_rel"], _stored(user)["max_cj_fee_abs"]) == ("0.004", 20000)
    r = user.ok("joinmarket_coinjoin", dest, "0.02", "-w", wallet)
    job = r.json()
    # the follow/cancel hints of the job work as written too
    r = user.run_line(job["cancel"])
    assert r.returncode == 0 and r.json()["state"] == "cancelled", r
    r = user.run_line(job["follow"])
    assert r.returncode == 1 and r.err_lines[-1].startswith(f"coinjoin {job['job']} cancelled"), r
    assert shlex.split(job["follow"])[:4] == ["electrum", "--regtest", "-D", str(user.datadir)]
