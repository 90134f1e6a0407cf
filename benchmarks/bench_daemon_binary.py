#!/usr/bin/env python3
"""The frozen jmdaemon binary: size, cold start-to-ready time, idle RSS, and whether two builds
from the same commit are byte-identical.

    .venv/bin/python benchmarks/bench_daemon_binary.py [--runs 5] [--no-repro] [--drop-caches]
                                                       [--onedir] [--compare OTHER_BINARY]

* size: ``dist/jmdaemon`` (built or refreshed first, as ``make daemon-binary`` does);
* start-to-ready: from ``exec`` to the first AMP answer on the port it prints (a one-file
  PyInstaller binary unpacks itself into a temp dir on every start); median/min/max of N fresh
  processes, and ``python -m jmdaemon`` for comparison. Also the CPU time the daemon's processes
  used up to that point (user + system, from /proc): wall time grows with the machine's load, CPU
  time hardly. ``--drop-caches`` (root) empties the page cache before the first run, which is then
  reported separately as "first (cold cache)";
* unpacked: what the one-file binary writes to its ``_MEI*`` temp dir on every start (RAM where
  /tmp is a tmpfs);
* idle RSS: bootloader process + the Python child it runs, 3 s after ready, no clients
  (benchmarks/bench_daemon_rss.py says what it is made of);
* ``--onedir``: the same for the one-folder build (``build_daemon.py --onedir``): size on disk,
  start-to-ready, RSS;
* ``--compare OTHER``: another one-file binary (e.g. the previous build, from the binary cache)
  measured in the same session, its starts alternating with ours so that both see the same load;
* reproducibility: two fresh builds (no binary cache, separate output dirs) -> sha256 of each.

Ends with one line of key=value figures.
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

from devstack.procmem import mapped_files, rss_kib, tree  # noqa: E402
from electrum_joinmarket.link.daemon import ProbeResult, probe  # noqa: E402
from jmcore import linkauth  # noqa: E402


def load_build():
    spec = importlib.util.spec_from_file_location("build_daemon", ROOT / "packaging" / "build_daemon.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (0 if it is gone)."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def unpacked_bytes(pids: list[int]) -> int:
    """Size of the one-file binary's _MEI temp dir (0 if it has none)."""
    for pid in pids:
        for path in mapped_files(pid):
            m = re.match(r"(.*/_MEI[^/]+)/", path)
            if m:
                return sum(f.stat().st_size for f in pathlib.Path(m.group(1)).rglob("*")
                           if f.is_file() and not f.is_symlink())
    return 0


def dir_bytes(path: pathlib.Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


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
            # the daemon proves it knows the cookie in its data dir (jmcore.linkauth)
            cookie = linkauth.cookie_file(d)
            deadline = time.monotonic() + 60
            while (r := await probe("127.0.0.1", port, timeout=2.0, cookie_path=cookie)) != ProbeResult.AMP:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[0]} does not answer AMP: {r}")
                await asyncio.sleep(0.01)
        asyncio.run(wait_amp())
        t_ready = time.monotonic() - t0
        pids = tree(proc.pid)
        res = {"listening_s": t_line, "ready_s": t_ready, "cpu_s": sum(cpu_s(p) for p in pids)}
        if measure_rss:
            res["unpacked_bytes"] = unpacked_bytes(pids)
            time.sleep(3)
            pids = tree(proc.pid)
            res["rss_parent_kib"] = rss_kib(proc.pid)
            res["rss_children_kib"] = sum(rss_kib(k) for k in pids[1:])
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


def summary(rs: list[dict]) -> dict:
    ready = [r["ready_s"] for r in rs]
    return {"ready_median_s": statistics.median(ready), "ready_min_s": min(ready),
            "ready_max_s": max(ready), "cpu_median_s": statistics.median(r["cpu_s"] for r in rs),
            "cpu_min_s": min(r["cpu_s"] for r in rs), "cpu_max_s": max(r["cpu_s"] for r in rs),
            "rss_parent_kib": rs[0]["rss_parent_kib"], "rss_child_kib": rs[0]["rss_children_kib"],
            "rss_total_kib": rs[0]["rss_total_kib"], "unpacked_bytes": rs[0]["unpacked_bytes"]}


def alternating(argvs: list[list[str]], runs: int) -> list[dict]:
    """``runs`` fresh starts of each of ``argvs``, taking turns (the same load for each)."""
    results: list[list[dict]] = [[] for _ in argvs]
    for i in range(runs):
        for argv, rs in zip(argvs, results, strict=True):
            rs.append(start_and_measure(argv, measure_rss=(i == 0)))
    return [summary(rs) for rs in results]


def series(argv: list[str], runs: int, env=None) -> dict:
    """``runs`` fresh starts of ``argv``: start-to-ready and CPU medians, RSS and unpacked size
    of the first."""
    return summary([start_and_measure(argv, measure_rss=(i == 0), env=env) for i in range(runs)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-repro", action="store_true", help="skip the two fresh builds")
    ap.add_argument("--drop-caches", action="store_true", help="drop the page cache before run 1 (root)")
    ap.add_argument("--onedir", action="store_true", help="also build and measure the one-folder build")
    ap.add_argument("--compare", metavar="BINARY",
                    help="also measure this one-file binary, alternating with ours")
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
    result["ready_first_cold_cache_s"] = first
    if args.compare:
        result["onefile"], result["compare"] = alternating([[str(binary)], [args.compare]],
                                                           args.runs)
        result["compare"]["size_bytes"] = pathlib.Path(args.compare).stat().st_size
    else:
        result["onefile"] = series([str(binary)], args.runs)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result["python_m"] = series([sys.executable, "-m", "jmdaemon"], max(1, args.runs // 2), env=env)
    if args.onedir:
        onedir_exe = build.build_onedir(ROOT / "dist")
        result["onedir"] = series([str(onedir_exe)], args.runs)
        result["onedir"]["disk_bytes"] = dir_bytes(onedir_exe.parent)

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
    one, pym = result["onefile"], result["python_m"]
    print(f"jmdaemon binary       {result['size_bytes']} bytes ({mib:.1f} MiB), sha256 {result['sha256']}")
    print(f"  commit {result['commit'][:12]}{' (+ uncommitted changes)' if result['sources_dirty'] else ''}, "
          f"PyInstaller {result['pyinstaller']}, Python {result['python'].split()[0]}")
    print(f"  unpacked on start   {one['unpacked_bytes'] / 2**20:.1f} MiB into /tmp/_MEI*")
    if first is not None:
        print(f"start-to-ready        first (cold page cache) {first:.3f} s")

    def line(name, r):
        print(f"{name:<22}median {r['ready_median_s']:.3f} s (min {r['ready_min_s']:.3f}, max "
              f"{r['ready_max_s']:.3f}); CPU {r['cpu_median_s']:.2f} s "
              f"({r['cpu_min_s']:.2f}-{r['cpu_max_s']:.2f}); idle RSS "
              f"{r['rss_total_kib'] / 1024:.1f} MiB" +
              (f" (bootloader {r['rss_parent_kib'] / 1024:.1f} + python {r['rss_child_kib'] / 1024:.1f})"
               if r["rss_child_kib"] else ""))
    print(f"start-to-ready ({args.runs} runs each)")
    line("  one-file binary", one)
    if "compare" in result:
        c = result["compare"]
        line("  --compare binary", c)
        print(f"  --compare binary    {c['size_bytes']} bytes, unpacked "
              f"{c['unpacked_bytes'] / 2**20:.1f} MiB ({args.compare})")
    line("  python -m jmdaemon", pym)
    if "onedir" in result:
        line("  one-folder build", result["onedir"])
        print(f"  one-folder on disk  {result['onedir']['disk_bytes'] / 2**20:.1f} MiB "
              f"(dist/jmdaemon-onedir), nothing unpacked on start")
    if "repro_builds" in result:
        a, b = result["repro_builds"]
        print(f"reproducible          {'YES' if result['repro_identical'] else 'NO'}: "
              f"build 1 {a['sha256']} ({a['build_s']} s), build 2 {b['sha256']} ({b['build_s']} s)"
              f"{'' if result['repro_matches_dist'] else '  (differs from dist/jmdaemon)'}")
    print("RESULT " + json.dumps(result))
    kv = {"size_bytes": result["size_bytes"], "ready_median_s": round(one["ready_median_s"], 3),
          "ready_cpu_s": round(one["cpu_median_s"], 2),
          "rss_mib": round(one["rss_total_kib"] / 1024, 1),
          "unpacked_mib": round(one["unpacked_bytes"] / 2**20, 1),
          "python_m_ready_median_s": round(pym["ready_median_s"], 3),
          "python_m_rss_mib": round(pym["rss_total_kib"] / 1024, 1)}
    if "onedir" in result:
        od = result["onedir"]
        kv.update(onedir_disk_mib=round(od["disk_bytes"] / 2**20, 1),
                  onedir_ready_median_s=round(od["ready_median_s"], 3),
                  onedir_rss_mib=round(od["rss_total_kib"] / 1024, 1))
    if "compare" in result:
        c = result["compare"]
        kv.update(compare_size_bytes=c["size_bytes"], compare_ready_median_s=round(c["ready_median_s"], 3),
                  compare_ready_cpu_s=round(c["cpu_median_s"], 2),
                  compare_unpacked_mib=round(c["unpacked_bytes"] / 2**20, 1),
                  compare_rss_mib=round(c["rss_total_kib"] / 1024, 1))
    if "repro_builds" in result:
        kv["reproducible"] = "yes" if result["repro_identical"] else "no"
    print(" ".join(f"{k}={v}" for k, v in kv.items()))


if __name__ == "__main__":
    main()
