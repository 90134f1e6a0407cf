"""The user's jmdaemon as the CLI user meets it (issue 14.7, 14.8): a daemon Electrum started is
recorded as its own (pid file in the daemon's data dir); after an Electrum crash (SIGKILL) the
next Electrum stops that orphan and starts its own; a daemon whose Electrum still runs is never
touched; a clean `electrum stop` stops it and removes the record."""
from __future__ import annotations

import json
import os
import pathlib
import time

import pytest

from devstack.procs import free_port

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def _records(home: pathlib.Path) -> dict:
    return {p.name: json.loads(p.read_text())
            for p in (home / ".jmdaemon").glob("jmdaemon-started-by-electrum.*.pid")}


def _alive(pid: int) -> bool:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_orphan_daemon_of_a_crashed_electrum_is_stopped_by_the_next_one(make_user):
    port = free_port()
    user = make_user("crashy", daemon_port=port)
    user.start_daemon()
    user.ok("joinmarket_orderbook", "--wait", "1")          # makes the plugin start jmdaemon
    (rec,) = _records(user.home).values()
    first = rec["pid"]
    assert rec["owner_pid"] == user.daemon.pid and rec["port"] == port and _alive(first)
    assert rec["binary"].endswith("/jmdaemon")
    status = user.ok("joinmarket_status").json()["daemon_link"]["state"]
    assert status["status"] == "started_binary" and status["pid"] == first
    assert status["log"] == str(user.home / ".jmdaemon" / "jmdaemon-started-by-electrum.log")

    # another Electrum (own data dir, same HOME and port) while the first runs: not an orphan
    other = make_user("other", daemon_port=port)
    other.env["HOME"] = str(user.home)
    other.start_daemon()
    other.ok("joinmarket_orderbook", "--wait", "1")
    assert other.ok("joinmarket_status").json()["daemon_link"]["state"]["status"] == "external"
    assert _alive(first) and list(_records(user.home).values()) == [rec]
    other.stop_daemon()
    assert _alive(first)

    user.kill_daemon()                                      # the crash: no plugin code runs
    time.sleep(1)
    assert _alive(first), "jmdaemon should outlive the crash (that is the orphan)"

    user.start_daemon()
    user.ok("joinmarket_orderbook", "--wait", "1")
    assert _wait_gone(first), "the orphan was not stopped"
    (rec2,) = _records(user.home).values()
    assert rec2["pid"] != first and rec2["owner_pid"] == user.daemon.pid and _alive(rec2["pid"])
    status = user.ok("joinmarket_status").json()["daemon_link"]["state"]
    assert status["orphans_stopped"] == [first] and status["pid"] == rec2["pid"]
    assert "left running by Electrum pid" in user.daemon_log_text()

    assert user.stop_daemon() == 0
    assert _wait_gone(rec2["pid"])
    assert _records(user.home) == {}
    assert not any(p.startswith("jmdaemon-started-by-electrum.") and p.endswith(".pid")
                   for p in os.listdir(user.home / ".jmdaemon"))


def test_daemon_port_change_applies_at_next_use_or_says_why_not(funded_user, ircd):
    """14.7: `setconfig plugins.joinmarket.daemon_port` takes effect at the next use without
    restarting Electrum (the daemon it started on the old port is stopped); while a coinjoin
    still uses the old daemon, the command says so instead of switching under it."""
    from .harness import quiet_channels
    a, b = free_port(), free_port()
    user, wallet = funded_user(daemon_port=a, orderbook_wait=300, channels=quiet_channels(ircd))
    dest = user.rpc("getunusedaddress", wallet=wallet)
    job = user.ok("joinmarket_coinjoin", dest, "0.05", "-w", wallet).json()["job"]
    (rec,) = _records(user.home).values()
    assert rec["port"] == a
    user.setconfig("plugins.joinmarket.daemon_port", b)
    r = user.run("joinmarket_orderbook", "--wait", "1")
    assert r.returncode == 1 and r.err_lines == [
        f"the daemon settings changed (plugins.joinmarket.daemon_port {a} -> {b}) while coinjoin "
        f"{job} (w1) uses the current daemon; they apply once it ends"], r
    user.ok("joinmarket_cancel", "-w", wallet)
    user.ok("joinmarket_orderbook", "--wait", "1")
    status = user.ok("joinmarket_status").json()
    assert status["daemon"] == f"127.0.0.1:{b}"
    link = status["daemon_link"]["state"]
    assert link["status"] == "started_binary" and link["port"] == b
    assert _wait_gone(rec["pid"]), "the daemon on the old port was left running"
    (rec2,) = _records(user.home).values()
    assert rec2["port"] == b and rec2["pid"] == link["pid"]
