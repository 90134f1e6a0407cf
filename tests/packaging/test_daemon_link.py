"""electrum_joinmarket.link.daemon against the real binary: it starts the binary when no daemon
runs, reuses one that does (checked by a real AMP exchange), refuses a non-AMP listener, stops
only what it started (also at interpreter exit), and reports each outcome as a status."""
from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest

from devstack.procs import free_port
from electrum_joinmarket.link.daemon import DaemonLink, DaemonStatus, ProbeResult, find_daemon_binary, probe

from .helpers import ROOT
from .test_daemon_binary import start_binary

pytestmark = pytest.mark.e2e


@pytest.fixture
def isolated_env(monkeypatch, tmp_path):
    """No jmdaemon on PATH or in ~/.local/bin unless a test puts it there."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("JMDAEMON_BINARY", raising=False)
    return home


def arun(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_starts_binary_when_none_runs_and_reuses_a_running_one(daemon_binary, tmp_path, isolated_env):
    port = free_port()

    async def main():
        assert await probe("127.0.0.1", port) == ProbeResult.CLOSED
        first = DaemonLink("127.0.0.1", port, binary=str(daemon_binary), datadir=str(tmp_path / "d"),
                           in_process=False)
        st = await first.ensure()
        assert st.status == DaemonStatus.STARTED_BINARY, st.as_dict()
        assert st.usable and st.started_by_us and st.binary == str(daemon_binary) and st.pid
        assert "Started the JoinMarket daemon" in st.text
        assert await probe("127.0.0.1", port) == ProbeResult.AMP
        pid = st.pid
        assert (await first.ensure()).pid == pid              # idempotent: no second daemon

        second = DaemonLink("127.0.0.1", port, binary=str(daemon_binary), in_process=False)
        st2 = await second.ensure()
        assert st2.status == DaemonStatus.EXTERNAL and not st2.started_by_us, st2.as_dict()
        await second.stop()                                   # not ours: left running
        assert await probe("127.0.0.1", port) == ProbeResult.AMP

        st = await first.stop()
        assert st.status == DaemonStatus.STOPPED and st.detail == "exit status 0", st.as_dict()
        assert await probe("127.0.0.1", port) == ProbeResult.CLOSED
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie_or_gone(pid)
    arun(main())
    log = (tmp_path / "d" / "jmdaemon-started-by-electrum.log").read_text()
    assert "jmdaemon stopped" in log and "Traceback" not in log


def _is_zombie_or_gone(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_reuses_a_daemon_started_outside_electrum(daemon_binary, tmp_path, isolated_env):
    p = start_binary(daemon_binary, tmp_path, "outside")
    try:
        async def main():
            link = DaemonLink("127.0.0.1", p.port, binary=str(daemon_binary),
                              datadir=p.extra["datadir"])
            st = await link.ensure()
            assert st.status == DaemonStatus.EXTERNAL, st.as_dict()
            await link.stop()
        arun(main())
        assert p.alive()
    finally:
        assert p.stop() == 0


def test_finds_binary_next_to_electrum_data_dir(daemon_binary, tmp_path, isolated_env):
    electrum_dir = tmp_path / "electrum"
    electrum_dir.mkdir()
    assert find_daemon_binary(None, str(electrum_dir)) is None
    os.symlink(daemon_binary, electrum_dir / "jmdaemon")
    assert find_daemon_binary(None, str(electrum_dir)) == str(electrum_dir / "jmdaemon")
    local = isolated_env / ".local" / "bin"
    local.mkdir(parents=True)
    os.symlink(daemon_binary, local / "jmdaemon")
    assert find_daemon_binary(None, None) == str(local / "jmdaemon")
    assert find_daemon_binary(str(daemon_binary), str(electrum_dir)) == str(daemon_binary)


def test_from_electrum_config(daemon_binary, tmp_path, isolated_env):
    from electrum.simple_config import SimpleConfig
    port = free_port()
    config = SimpleConfig({"electrum_path": str(tmp_path / "el"), "regtest": True})
    config.set_key("plugins.joinmarket.daemon_port", port, save=False)
    config.set_key("plugins.joinmarket.daemon_binary", str(daemon_binary), save=False)
    config.set_key("plugins.joinmarket.daemon_datadir", str(tmp_path / "jmd"), save=False)
    link = DaemonLink.from_config(config)
    assert link.address == ("127.0.0.1", port)

    async def main():
        st = await link.ensure()
        assert st.status == DaemonStatus.STARTED_BINARY, st.as_dict()
        assert (await link.stop()).status == DaemonStatus.STOPPED
    arun(main())
    assert (tmp_path / "jmd" / "jmdaemon-started-by-electrum.log").exists()


def test_something_else_on_the_port_is_not_used(daemon_binary, tmp_path, isolated_env):
    async def main():
        async def handler(reader, writer):
            writer.write(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            link = DaemonLink("127.0.0.1", port, binary=str(daemon_binary))
            st = await link.ensure()
            assert st.status == DaemonStatus.NOT_AMP and not st.usable, st.as_dict()
            assert link._proc is None
        finally:
            server.close()
    arun(main())


def test_unavailable_and_failed_are_reported(tmp_path, isolated_env):
    port = free_port()

    async def main():
        link = DaemonLink("127.0.0.1", port, electrum_dir=str(tmp_path), in_process=False)
        st = await link.ensure()
        assert st.status == DaemonStatus.UNAVAILABLE, st.as_dict()
        assert "no jmdaemon binary" in st.detail and str(tmp_path / "jmdaemon") in st.detail
        off = await DaemonLink("127.0.0.1", port, autostart=False).ensure()
        assert off.status == DaemonStatus.UNAVAILABLE and "autostart is off" in off.detail
        remote = await DaemonLink("192.0.2.1", port, probe_timeout=0.5).ensure()
        assert remote.status == DaemonStatus.UNAVAILABLE and "127.0.0.1" in remote.detail
        bad = tmp_path / "fake-jmdaemon"
        bad.write_text("#!/bin/sh\necho 'jmdaemon: error: cannot listen' >&2\nexit 2\n")
        bad.chmod(0o755)
        st = await DaemonLink("127.0.0.1", port, binary=str(bad), datadir=str(tmp_path / "d"),
                              in_process=False).ensure()
        assert st.status == DaemonStatus.FAILED and "exited with status 2" in st.detail, st.as_dict()
        assert "cannot listen" in st.detail
    arun(main())


def _run_script(code: str, tmp_path, timeout=120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HOME=str(tmp_path), PATH="/usr/bin:/bin")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=str(tmp_path))


def test_started_binary_is_stopped_when_the_process_exits(daemon_binary, tmp_path):
    """Electrum exiting without an explicit stop (atexit safety net)."""
    port = free_port()
    r = _run_script(f"""
        import asyncio
        from electrum_joinmarket.link.daemon import DaemonLink
        async def main():
            st = await DaemonLink("127.0.0.1", {port}, binary={str(daemon_binary)!r},
                                  datadir={str(tmp_path / 'd')!r}, in_process=False).ensure()
            print(st.status.value, st.pid, flush=True)
        asyncio.run(main())
    """, tmp_path)
    assert r.returncode == 0, r.stderr
    status, pid = r.stdout.split()
    assert status == "started_binary"
    assert arun(probe("127.0.0.1", port)) == ProbeResult.CLOSED
    assert _is_zombie_or_gone(int(pid))
    assert "jmdaemon stopped" in (tmp_path / "d" / "jmdaemon-started-by-electrum.log").read_text()


def test_in_process_fallback(tmp_path):
    """No binary, Twisted importable: the daemon runs in a reactor thread of the process (run in a
    subprocess: the Twisted reactor is global and pytest-twisted owns this process's one)."""
    port = free_port()
    r = _run_script(f"""
        import asyncio, sys
        from electrum_joinmarket.link.daemon import DaemonLink, DaemonStatus, ProbeResult, probe
        assert "twisted" not in sys.modules and "jmdaemon" not in sys.modules
        async def main():
            link = DaemonLink("127.0.0.1", {port}, electrum_dir={str(tmp_path)!r},
                              datadir={str(tmp_path / 'd')!r})
            st = await link.ensure()
            assert st.status == DaemonStatus.IN_PROCESS, st.as_dict()
            assert "twisted" in sys.modules and "jmdaemon" in sys.modules
            assert await probe("127.0.0.1", {port}) == ProbeResult.AMP
            st = await link.stop()
            assert st.status == DaemonStatus.STOPPED, st.as_dict()
            assert await probe("127.0.0.1", {port}) == ProbeResult.CLOSED
            print("OK")
        asyncio.run(main())
    """, tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stdout + r.stderr


BOOTLOADER = """#!{python}
# Like a one-file PyInstaller binary: a bootloader that runs the program as a child and, here,
# ignores SIGTERM (a hung daemon); the child ignores it too and never answers AMP.
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
datadir = sys.argv[sys.argv.index("--datadir") + 1]
pid = os.fork()
if pid == 0:
    with open(os.path.join(datadir, "child.pid"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(600)
    os._exit(0)
time.sleep(600)
"""


def test_sigkill_fallback_stops_a_one_file_binarys_child_too(tmp_path, isolated_env):
    """A started daemon that ignores SIGTERM is killed with its process group: the Python child
    of a one-file binary's bootloader is not left orphaned (it was, with a SIGKILL of the
    bootloader alone)."""
    fake = tmp_path / "jmdaemon"
    fake.write_text(BOOTLOADER.format(python=sys.executable))
    fake.chmod(0o755)
    datadir = tmp_path / "d"
    datadir.mkdir()

    async def main():
        link = DaemonLink("127.0.0.1", free_port(), binary=str(fake), datadir=str(datadir),
                          in_process=False, start_timeout=3)
        return await link.ensure()
    st = arun(main())
    assert st.status == DaemonStatus.FAILED and "no AMP answer" in st.detail, st.as_dict()
    child = int((datadir / "child.pid").read_text())
    deadline = time.monotonic() + 10
    while not _is_zombie_or_gone(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _is_zombie_or_gone(child), f"the bootloader's child {child} outlived the stop"
