"""pytest plugin of ``bench_suite_cpu.py``: the CPU time of each test, counted for the whole tree of
processes its worker started (Electrum daemons, CLI clients, jmdaemons, bitcoind, ElectrumX, Tor),
detached ones included.

Each pytest process that runs tests (an xdist worker, or the one process without workers) moves
itself into its own cgroup before it starts anything, so every process it starts is counted
there; the cgroup's CPU counter is read when a test starts and when its teardown ends. A
module's or the session's fixtures are counted in the test whose set-up or teardown runs them,
and the background work of a worker's services in whatever test runs meanwhile: a test that
costs much more here than alone is paying for something else on its worker.

Needs root and cgroup v1's cpuacct or cgroup v2 (``cpu.stat``). Writes one JSON line per test to
``$EJM_SUITE_CPU_DIR/<worker>.jsonl``: ``{"id", "cpu", "wall"}`` in seconds.
"""
from __future__ import annotations

import json
import os
import pathlib
import time
from typing import Any, Optional

V1 = pathlib.Path("/sys/fs/cgroup/cpuacct")
V2 = pathlib.Path("/sys/fs/cgroup")

_state: dict[str, Any] = {}


def cgroup_root() -> tuple[pathlib.Path, str]:
    """(the directory to create cgroups in, "v1" or "v2")."""
    if (V1 / "cpuacct.usage").exists():
        return V1, "v1"
    if (V2 / "cgroup.controllers").exists():
        return V2, "v2"
    raise RuntimeError("no cgroup v1 cpuacct and no cgroup v2 hierarchy at /sys/fs/cgroup")


def usage_seconds(cgroup: pathlib.Path, kind: str) -> float:
    if kind == "v1":
        return int((cgroup / "cpuacct.usage").read_text()) / 1e9
    for line in (cgroup / "cpu.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    raise RuntimeError(f"no usage_usec in {cgroup / 'cpu.stat'}")


def _worker_name() -> Optional[str]:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        return worker
    if os.environ.get("EJM_TEST_PHASE") == "parallel":
        return None                     # the controller of the workers runs no test
    return os.environ.get("EJM_TEST_PHASE") or "main"


def pytest_configure(config: Any) -> None:
    out_dir = os.environ.get("EJM_SUITE_CPU_DIR")
    worker = _worker_name()
    if not out_dir or worker is None:
        return
    root, kind = cgroup_root()
    cgroup = root / f"ejm-suite-cpu-{os.getpid()}-{worker}"
    cgroup.mkdir(exist_ok=True)
    (cgroup / "cgroup.procs").write_text(str(os.getpid()))
    _state.update(cgroup=cgroup, kind=kind,
                  out=open(pathlib.Path(out_dir) / f"{worker}.jsonl", "a", buffering=1))


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    if "cgroup" in _state:
        _state["t0"] = (usage_seconds(_state["cgroup"], _state["kind"]), time.monotonic())


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    if "cgroup" not in _state:
        return
    cpu0, wall0 = _state["t0"]
    cpu = usage_seconds(_state["cgroup"], _state["kind"]) - cpu0
    _state["out"].write(json.dumps({"id": nodeid, "cpu": round(cpu, 3),
                                    "wall": round(time.monotonic() - wall0, 3)}) + "\n")


def pytest_unconfigure(config: Any) -> None:
    """Back to the parent cgroup, then remove ours if nothing is left in it (a service that
    outlived the session keeps it; it is empty and removable once that ends)."""
    cgroup = _state.pop("cgroup", None)
    if cgroup is None:
        return
    _state["out"].close()
    try:
        (cgroup.parent / "cgroup.procs").write_text(str(os.getpid()))
        cgroup.rmdir()
    except OSError:
        pass
