"""Small helpers shared by the stack's service wrappers: free ports, installed binaries, waiting."""
from __future__ import annotations

import asyncio
import os
import pathlib
import shlex
import socket
import subprocess
import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")

CACHE = pathlib.Path(os.environ.get("EJM_CACHE", pathlib.Path.home() / ".cache" / "electrum-joinmarket"))


class StackError(RuntimeError):
    """A service of the regtest stack could not be started or did not become ready."""


NO_SERVICES_ENV = "EJM_NO_SERVICES"


def require_services(what: str) -> None:
    """Refuse to start ``what`` when ``$EJM_NO_SERVICES`` is set (``make test-fast``): a test that
    starts a service must carry the ``stack`` marker, and this makes a missing marker fail loudly
    instead of quietly slowing the fast tier down."""
    if os.environ.get(NO_SERVICES_ENV, "").strip() not in ("", "0"):
        raise StackError(f"{what} would start a service, but {NO_SERVICES_ENV} is set "
                         "(make test-fast): mark the test `stack`")


def installed_env() -> dict[str, str]:
    """The paths written by scripts/install.sh into env.sh (bitcoind, ElectrumX, ngircd)."""
    env_sh = CACHE / "env.sh"
    if not env_sh.exists():
        raise StackError(f"{env_sh} is missing: run `make install` first")
    out = {}
    for line in env_sh.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            out[key] = shlex.split(value)[0] if value else ""
    return out


# Parallel test workers (pytest-xdist sets PYTEST_XDIST_WORKER=gwN) each get their own block of
# ports below Linux's ephemeral range (32768+): a port one worker picked and handed to a service it
# is starting cannot be picked by another worker in the meantime, nor handed out by a bind(0).
_WORKER_PORT_BASE, _WORKER_PORT_BLOCK = 16_000, 2_000
_next_port: dict[int, int] = {}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now (in a parallel test worker:
    one of that worker's own block, see above)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit() and int(worker[2:]) < 8:
        n = int(worker[2:])
        lo = _WORKER_PORT_BASE + n * _WORKER_PORT_BLOCK
        for _ in range(_WORKER_PORT_BLOCK):
            port = _next_port.get(n, lo)
            _next_port[n] = lo + (port + 1 - lo) % _WORKER_PORT_BLOCK
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
        raise StackError(f"no free port left in test worker {worker}'s block")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- waiting: the one way tests, the demo and the stack wait for something -------------------
# Wait for an event (a state, an answer, a log line), never for a fixed time: a sleep followed by
# "nothing arrived" proves nothing. ``wait_for`` polls from a plain thread, ``wait_until`` from a
# coroutine; both return the predicate's truthy value and raise StackError naming ``what``.

def wait_for(pred: Callable[[], Optional[T]], timeout: float, what: str, interval: float = 0.05,
             proc: Optional[subprocess.Popen] = None, log: Optional[pathlib.Path] = None,
             errors_mean_not_yet: bool = False, tick: Optional[Callable[[], None]] = None) -> T:
    """Poll ``pred`` until it returns a truthy value, and return that value.

    Raises StackError on timeout, or as soon as ``proc`` exits (with the tail of ``log``).
    ``errors_mean_not_yet``: an exception from ``pred`` means "not ready" (a service that is
    starting); otherwise it propagates. ``tick`` runs between polls instead of sleeping (e.g. to
    process Qt events)."""
    deadline = time.monotonic() + timeout
    last_exc: Optional[BaseException] = None
    while True:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what}: process exited with {proc.returncode}{log_tail(log)}")
        try:
            value = pred()
            if value:
                return value
        except Exception as exc:
            if not errors_mean_not_yet:
                raise
            last_exc = exc
        if time.monotonic() >= deadline:
            break
        if tick is not None:
            tick()
        else:
            time.sleep(interval)
    last = f" (last error: {last_exc!r})" if last_exc is not None else ""
    raise StackError(f"timed out after {timeout:.0f}s waiting for {what}{last}{log_tail(log)}")


async def wait_until(pred: Callable[[], Optional[T]], timeout: float, what: str,
                     interval: float = 0.05) -> T:
    """``wait_for`` for coroutines: polls ``pred`` on the running loop without blocking it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = pred()
        if value:
            return value
        if loop.time() >= deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


def log_tail(log: Optional[pathlib.Path], lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- " + str(log) + " ---\n" + "\n".join(tail)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def terminate(proc: Optional[subprocess.Popen], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
