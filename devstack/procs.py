"""Small helpers shared by the stack's service wrappers: free ports, installed binaries, waiting."""
from __future__ import annotations

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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred: Callable[[], Optional[T]], timeout: float, what: str, interval: float = 0.1,
             proc: Optional[subprocess.Popen] = None, log: Optional[pathlib.Path] = None) -> T:
    """Poll ``pred`` until it returns a truthy value; raise StackError naming ``what`` on timeout
    or if ``proc`` exits first (with the tail of ``log``)."""
    deadline = time.monotonic() + timeout
    last_exc: Optional[BaseException] = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what}: process exited with {proc.returncode}{log_tail(log)}")
        try:
            value = pred()
            if value:
                return value
        except Exception as exc:  # the service is not up yet
            last_exc = exc
        time.sleep(interval)
    raise StackError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_exc!r})"
                     f"{log_tail(log)}")


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
