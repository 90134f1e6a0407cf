#!/usr/bin/env python3
"""Where the test suite's CPU time goes: runs the suite (or a selection) the way ``make test``
does (scripts/run_tests.sh, parallel workers, then the ``serial`` tests) with a pytest plugin
(benchmarks/suite_cpu_plugin.py) that counts each test's CPU time for every process its worker
started, and prints the totals by kind (tests/<kind>/), the most expensive modules and tests, and
each worker's CPU and wall time.

    sudo .venv/bin/python benchmarks/bench_suite_cpu.py [--workers 3] [--top 25] [-- PYTEST ARGS]

Needs root (it makes one cgroup per worker). The suite on 2 cores is mostly CPU-bound, so the
total CPU time over the number of cores is a floor for the wall time; how far above the floor a
run is says how much waiting is left. This is what showed (issue 13) that the xdist groups were
not applied: one module's tests on several workers, each starting the module's fixtures.

Ends with one line of key=value figures (seconds): the wall time, the total CPU time, the CPU
time per kind.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=3, help="parallel workers (0: one process)")
    ap.add_argument("--top", type=int, default=25, help="modules and tests to list")
    ap.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_suite_cpu: needs root (one cgroup per worker)", file=sys.stderr)
        return 2
    out = pathlib.Path(tempfile.mkdtemp(prefix="ejm-suite-cpu-"))
    env = dict(os.environ, EJM_SUITE_CPU_DIR=str(out), EJM_TEST_WORKERS=str(args.workers),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "benchmarks"),
                                                        os.environ.get("PYTHONPATH")])),
               PYTEST_ADDOPTS=" ".join(filter(None, [os.environ.get("PYTEST_ADDOPTS"),
                                                     "-p suite_cpu_plugin"])))
    t0 = time.monotonic()
    rc = subprocess.call(["bash", str(ROOT / "scripts" / "run_tests.sh"), *args.pytest_args],
                         cwd=ROOT, env=env)
    wall = time.monotonic() - t0
    rows = []
    workers: dict[str, list[float]] = {}
    for f in sorted(out.glob("*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            r["worker"] = f.stem
            r["module"] = r["id"].split("::")[0]
            parts = r["module"].split("/")
            r["kind"] = parts[1] if len(parts) > 2 else parts[0]
            rows.append(r)
            per_worker = workers.setdefault(f.stem, [0.0, 0.0, 0.0])
            per_worker[0] += r["cpu"]
            per_worker[1] += r["wall"]
            per_worker[2] += 1
    if not rows:
        print("bench_suite_cpu: no test was measured", file=sys.stderr)
        return 1

    def table(key: str, limit: int) -> list[tuple[str, float, float, int]]:
        acc: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0])
        for r in rows:
            a = acc[r[key]]
            a[0] += r["cpu"]
            a[1] += r["wall"]
            a[2] += 1
        return sorted(((k, v[0], v[1], int(v[2])) for k, v in acc.items()),
                      key=lambda t: -t[1])[:limit]

    total = sum(r["cpu"] for r in rows)
    print(f"\n{len(rows)} tests, {total:.0f} s of CPU, {wall:.0f} s wall (pytest exit {rc})")
    print("\nby kind               CPU s   test wall s  tests")
    for kind, cpu, twall, n in table("kind", 50):
        print(f"  {kind:18} {cpu:8.1f} {twall:12.1f} {n:6d}")
    print(f"\nmodules (top {args.top})")
    for module, cpu, twall, n in table("module", args.top):
        print(f"  {cpu:8.1f} {twall:8.1f} {n:4d}  {module}")
    print(f"\ntests (top {args.top})")
    for r in sorted(rows, key=lambda r: -r["cpu"])[:args.top]:
        print(f"  {r['cpu']:8.1f} {r['wall']:8.1f}  {r['id'].split('@')[0]}")
    print("\nworkers               CPU s   test wall s  tests")
    for name, (cpu, twall, count) in sorted(workers.items()):
        print(f"  {name:18} {cpu:8.1f} {twall:12.1f} {int(count):6d}")
    kinds = " ".join(f"{kind}_cpu_s={cpu:.0f}" for kind, cpu, _w, _n in table("kind", 50))
    print(f"wall_s={wall:.0f} total_cpu_s={total:.0f} tests={len(rows)} pytest_exit={rc} {kinds}")
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
