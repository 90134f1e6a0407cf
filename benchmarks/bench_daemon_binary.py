#!/usr/bin/env python3
"""The frozen jmdaemon binary: size, cold start-to-ready time, idle RSS, and whether two builds
from the same commit are byte-identical.

    .venv/bin/python benchmarks/bench_daemon_binary.py [--runs 5] [--no-repro] [--drop-caches]

* size: ``dist/jmdaemon`` (built or refreshed first, as ``make daemon-binary`` does);
* start-to-ready: from ``exec`` to the first AMP answer on the port it prints (a one-file
  PyInstaller binary unpacks itself into a temp dir on every start); median/min/max of N fresh
  processes, and ``python -m jmdaemon`` for comparison. ``--drop-caches`` (root) empties the page
  cache before the first run, which is then reported separately as "first (cold cache)";
* idle RSS: bootloader process + the Python child it runs, 3 s after ready, no clients;
* reproducibility: two fresh builds (no binary cache, separate output dirs) -> sha256 of each.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from electrum_joinmarket.link.daemon import ProbeResult, probe  # noqa: E402


def load_build():
    spec = importlib.util.spec_from_file_location("build_daemon", ROOT / "packaging" / "build_daemon.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rss_kib(pid: int) -> int:
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    out = []
    try:
        for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            out += [int(x) for x in text]
    except OSError:
        pass
    return out


def start_and_measure(argv: list[str], measure_rss: bool, env=None) -> dict:
    d = tempfile.mkdtemp(prefix="ejm-bench-bin-")
    t0 = time.monotonic()
    proc = subprocess.Popen(argv + ["--port", "0", "--datadir", d], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    try:
        port = None
        while port is None:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{argv[0]} exited with {proc.wait()}")
            m = re.search(r"listening on \S+:(\d+)", line)
            if m:
                port = int(m.group(1))
        t_line = time.monotonic() - t0

        async def wait_amp():
            while await probe("127.0.0.1", port, timeout=2.0) != ProbeResult.AMP:
                await asyncio.sleep(0.01)
        asyncio.run(wait_amp())
        t_ready = time.monotonic() - t0
        res = {"listening_s": t_line, "ready_s": t_ready}
        if measure_rss:
            time.sleep(3)
            kids = children(proc.pid)
            res["rss_parent_kib"] = rss_kib(proc.pid)
            res["rss_children_kib"] = sum(rss_kib(k) for k in kids)
            res["rss_total_kib"] = res["rss_parent_kib"] + res["rss_children_kib"]
        return res
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        subprocess.run(["rm", "-rf", d])


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-repro", action="store_true", help="skip the two fresh builds")
    ap.add_argument("--drop-caches", action="store_true", help="drop the page cache before run 1 (root)")
    args = ap.parse_args()
    build = load_build()
    binary = build.build(ROOT / "dist")
    meta = json.loads((ROOT / "dist" / "jmdaemon.build.json").read_text())
    result: dict = {"binary": str(binary), "size_bytes": binary.stat().st_size,
                    "sha256": sha256(binary), "commit": meta["commit"],
                    "sources_dirty": meta["sources_dirty"], "pyinstaller": meta["pyinstaller"],
                    "python": meta["python"]}

    first = None
    if args.drop_caches:
        subprocess.run(["sync"])
        try:
            pathlib.Path("/proc/sys/vm/drop_caches").write_text("3\n")
            first = start_and_measure([str(binary)], measure_rss=False)["ready_s"]
        except OSError as exc:
            print(f"(could not drop caches: {exc})", file=sys.stderr)
    runs = [start_and_measure([str(binary)], measure_rss=(i == 0)) for i in range(args.runs)]
    ready = [r["ready_s"] for r in runs]
    result.update({"ready_median_s": statistics.median(ready), "ready_min_s": min(ready),
                   "ready_max_s": max(ready), "ready_first_cold_cache_s": first,
                   "rss_parent_kib": runs[0]["rss_parent_kib"],
                   "rss_child_kib": runs[0]["rss_children_kib"],
                   "rss_total_kib": runs[0]["rss_total_kib"]})
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    py = [start_and_measure([sys.executable, "-m", "jmdaemon"], measure_rss=(i == 0), env=env)
          for i in range(max(1, args.runs // 2))]
    result["python_m_jmdaemon_ready_median_s"] = statistics.median(r["ready_s"] for r in py)
    result["python_m_jmdaemon_rss_kib"] = py[0]["rss_total_kib"]

    if not args.no_repro:
        hashes = []
        with tempfile.TemporaryDirectory(prefix="ejm-repro-") as tmp:
            for name in ("a", "b"):
                out = pathlib.Path(tmp) / name
                t0 = time.monotonic()
                built = build.build(out, force=True, use_cache=False)
                hashes.append({"sha256": sha256(built), "build_s": round(time.monotonic() - t0, 1)})
        result["repro_builds"] = hashes
        result["repro_identical"] = hashes[0]["sha256"] == hashes[1]["sha256"]
        result["repro_matches_dist"] = hashes[0]["sha256"] == result["sha256"]

    mib = result["size_bytes"] / 2**20
    print(f"jmdaemon binary       {result['size_bytes']} bytes ({mib:.1f} MiB), sha256 {result['sha256']}")
    print(f"  commit {result['commit'][:12]}{' (+ uncommitted changes)' if result['sources_dirty'] else ''}, "
          f"PyInstaller {result['pyinstaller']}, Python {result['python'].split()[0]}")
    if first is not None:
        print(f"start-to-ready        first (cold page cache) {first:.3f} s")
    print(f"start-to-ready        median {result['ready_median_s']:.3f} s "
          f"(min {result['ready_min_s']:.3f}, max {result['ready_max_s']:.3f}, {args.runs} runs)")
    print(f"  python -m jmdaemon  median {result['python_m_jmdaemon_ready_median_s']:.3f} s")
    print(f"idle RSS              {result['rss_total_kib'] / 1024:.1f} MiB "
          f"(bootloader {result['rss_parent_kib'] / 1024:.1f} + "
          f"python {result['rss_child_kib'] / 1024:.1f}); "
          f"python -m jmdaemon {result['python_m_jmdaemon_rss_kib'] / 1024:.1f} MiB")
    if "repro_builds" in result:
        a, b = result["repro_builds"]
        print(f"reproducible          {'YES' if result['repro_identical'] else 'NO'}: "
              f"build 1 {a['sha256']} ({a['build_s']} s), build 2 {b['sha256']} ({b['build_s']} s)"
              f"{'' if result['repro_matches_dist'] else '  (differs from dist/jmdaemon)'}")
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
