#!/usr/bin/env python3
"""Idle RSS of jmdaemon (the frozen ``dist/jmdaemon`` that ships, ``python -m jmdaemon`` as a pip or
source install runs it, and ``python -OO -m jmdaemon``, which is what the binary runs), and what
each MiB of it is.

    .venv/bin/python benchmarks/bench_daemon_rss.py [--runs 3] [--no-binary] [--top 6] [--tls]
                                                    [--compare OTHER_BINARY]

* idle RSS: each daemon started with ``--port 0``, its first AMP answer awaited, then 3 s of idle
  (no client, no channel; the daemon hands freed heap back to the OS 1 s after it listens,
  jmdaemon/memory.py); the median of ``--runs`` fresh processes. The binary is a bootloader
  process with the Python process as its child: both are counted. The binary's bytecode has no
  docstrings or asserts and its interpreter runs with -OO (packaging/jmdaemon.spec).
* by mapping: /proc/<pid>/smaps of one idle daemon, resident KiB per mapping, grouped (anonymous
  memory = Python objects and malloc; libpython; OpenSSL's libcrypto/libssl that the standard
  library's ssl and hashlib load; other libraries and extension modules; the rest).
* by import step: a fresh ``python -OO`` (as the binary) imports what the daemon imports, in the
  daemon's order
  (jmdaemon.cli, Twisted's core, the reactor, AMP, endpoints — these three with pyOpenSSL hidden,
  as jmdaemon.tls does —, jmdaemon.server), RSS read after each step; a second run traces Python's
  allocations (tracemalloc) per imported module and names the biggest modules of each step. The
  "running" step is the idle RSS of ``python -OO -m jmdaemon`` minus the last import step (the
  reactor running, the listening port, logging, the server factory, minus what the release of
  freed heap gives back).

* ``--tls``: also the binary serving AMP over TLS (``--ssl-cert``/``--ssl-key``, a throw-away
  self-signed certificate from the openssl CLI), 3 s after it listens: what a daemon that uses TLS
  holds (the standard library's ssl; before issue 13.5 pyOpenSSL and cryptography).
* ``--compare OTHER``: the same binary figures for another one-file binary (e.g. the previous
  build, from the binary cache), measured in the same session.

Ends with one line of key=value figures (MiB).
"""
from __future__ import annotations

import argparse
import asyncio
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

from devstack.procmem import smaps_rss, status, tree  # noqa: E402
from electrum_joinmarket.link.daemon import ProbeResult, probe  # noqa: E402
from jmcore import linkauth  # noqa: E402

MIB = 1024.0

# the daemon's own import order (jmdaemon/cli.py main, jmdaemon/tls.py import_twisted)
STEPS = [
    ("interpreter", "python start-up (site; none in the binary)", []),
    ("cli", "jmdaemon.cli: argparse, logging, configparser, dataclasses", ["jmdaemon.cli"]),
    ("twisted_core", "Twisted's core: zope.interface, attrs, typing_extensions, twisted.python "
                     "(its compat module imports http.cookiejar -> urllib.request -> http.client, "
                     "email, ssl), twisted.logger", ["twisted.logger"]),
    ("reactor", "the epoll reactor: tcp, defer (-> asyncio), process (-> pty), threads, filepath "
                "(-> ctypes)", ["twisted.internet.reactor"]),
    ("amp", "twisted.protocols.amp (-> decimal)", ["twisted.protocols.amp"]),
    ("endpoints", "twisted.internet.endpoints (-> twisted.plugin, zipfile)",
     ["twisted.internet.endpoints"]),
    ("server", "jmdaemon.server: AMP commands (jmcore), messaging, orderbook, blacklist",
     ["jmdaemon.server"]),
]
HIDDEN_FROM = "reactor"          # OpenSSL hidden for reactor/amp/endpoints, as jmdaemon.tls does
HIDDEN_UNTIL = "endpoints"

STEP_SCRIPT = r"""
import importlib, json, sys
steps = json.loads(sys.argv[1]); hide_from, hide_until = sys.argv[2], sys.argv[3]
trace = sys.argv[4] == "1"

def rss():
    out = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile"):
            out[k] = int(v.split()[0])
    return out

self_kib, stack = {}, []
if trace:
    import tracemalloc, importlib.abc
    tracemalloc.start(1)

    class Loader:
        def __init__(self, inner, name):
            self.inner, self.name = inner, name
        def create_module(self, spec):
            return self.inner.create_module(spec)
        def exec_module(self, module):
            before = tracemalloc.get_traced_memory()[0]
            stack.append(0)
            try:
                self.inner.exec_module(module)
            finally:
                child = stack.pop()
                total = tracemalloc.get_traced_memory()[0] - before
                self_kib[self.name] = self_kib.get(self.name, 0) + (total - child) / 1024
                if stack:
                    stack[-1] += total

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            for f in sys.meta_path:
                if f is self or not hasattr(f, "find_spec"):
                    continue
                spec = f.find_spec(name, path, target)
                if spec is not None:
                    if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                        spec.loader = Loader(spec.loader, name)
                    return spec
            return None
    sys.meta_path.insert(0, Finder())

out = []
for key, modules in steps:
    if key == hide_from and "OpenSSL" not in sys.modules:
        sys.modules["OpenSSL"] = None
    before = set(self_kib)
    for m in modules:
        importlib.import_module(m)
    if key == hide_until and sys.modules.get("OpenSSL", 0) is None:
        del sys.modules["OpenSSL"]
    new = {m: round(self_kib[m]) for m in set(self_kib) - before}
    out.append({"key": key, "rss": rss(), "modules": len(sys.modules), "self_kib": new})
print(json.dumps(out))
"""


def wait_ready(proc: subprocess.Popen, datadir: str, amp: bool = True) -> int:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"daemon exited with {proc.wait()}")
        m = re.search(r"listening on \S+:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    if not amp:                  # (over TLS: the probe speaks plain AMP)
        return port

    async def amp_answers():
        # the daemon proves it knows the cookie in its data dir (jmcore.linkauth)
        cookie = linkauth.cookie_file(datadir)
        deadline = time.monotonic() + 60
        while (r := await probe("127.0.0.1", port, timeout=2.0, cookie_path=cookie)) != ProbeResult.AMP:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the daemon does not answer AMP: {r}")
            await asyncio.sleep(0.01)
    asyncio.run(amp_answers())
    return port


def idle_daemon(argv: list[str], env=None, idle_s: float = 3.0, amp: bool = True) -> dict:
    """RSS (per process of the tree) and grouped smaps of an idle daemon."""
    d = tempfile.mkdtemp(prefix="ejm-bench-rss-")
    proc = subprocess.Popen(argv + ["--port", "0", "--datadir", d], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True, env=env)
    try:
        wait_ready(proc, d, amp)
        time.sleep(idle_s)
        pids = tree(proc.pid)
        procs = [{"pid": p, **status(p), "smaps": smaps_rss(p)} for p in pids]
        return {"total_kib": sum(p.get("VmRSS", 0) for p in procs), "procs": procs}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        subprocess.run(["rm", "-rf", d])


def group_mapping(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    if name in ("[anon]", "[heap]"):
        return "anonymous: Python objects, malloc"
    if base.startswith("libpython"):
        return "libpython (pages touched)"
    if base.startswith(("libcrypto", "libssl", "_ssl.", "_hashlib.")):
        return "OpenSSL libcrypto/libssl (stdlib ssl, hashlib)"
    if name.startswith("[") :
        return "stack, vdso, other"
    if "lib-dynload" in name or re.search(r"\.cpython-\d+.*\.so$|\.abi3\.so$", base):
        return "other extension modules"
    if base.startswith(("libc.", "libc-", "ld-linux", "libm.", "libpthread", "libdl", "libgcc",
                        "libz.", "liblzma", "libbz2", "libffi", "libuuid")):
        return "C library and other system libraries"
    if base.startswith(("python", "jmdaemon")) or "/bin/" in name:
        return "the executable"
    return "other files (" + base + ")"


def grouped(smaps: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, kib in smaps.items():
        g = group_mapping(name)
        out[g] = out.get(g, 0) + kib
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def import_steps(python: str, trace: bool) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([python, "-OO", "-c", STEP_SCRIPT, json.dumps([(k, m) for k, _, m in STEPS]),
                        HIDDEN_FROM, HIDDEN_UNTIL, "1" if trace else "0"],
                       capture_output=True, text=True, env=env, check=True)
    return json.loads(r.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-binary", action="store_true", help="only python -m jmdaemon")
    ap.add_argument("--top", type=int, default=6, help="modules named per import step")
    ap.add_argument("--tls", action="store_true", help="also the binary serving AMP over TLS")
    ap.add_argument("--compare", metavar="BINARY", help="the binary figures of another binary too")
    args = ap.parse_args()

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    py_runs = [idle_daemon([sys.executable, "-m", "jmdaemon"], env=env) for _ in range(args.runs)]
    py_rss = statistics.median(r["total_kib"] for r in py_runs) / MIB
    oo_runs = [idle_daemon([sys.executable, "-OO", "-m", "jmdaemon"], env=env)
               for _ in range(args.runs)]
    oo_rss = statistics.median(r["total_kib"] for r in oo_runs) / MIB
    py_one = oo_runs[0]["procs"][0]

    binary = ROOT / "dist" / "jmdaemon"
    bin_runs = []
    if not args.no_binary:
        if not binary.is_file():
            subprocess.run([sys.executable, str(ROOT / "packaging" / "build_daemon.py")], check=True)
        benv = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        bin_runs = [idle_daemon([str(binary)], env=benv) for _ in range(args.runs)]
    binaries = [("dist/jmdaemon", str(binary))] + ([("--compare", args.compare)] if args.compare else [])
    extra: dict[str, float] = {}
    if args.compare and not args.no_binary:
        extra["compare_rss_binary_mib"] = statistics.median(
            idle_daemon([args.compare], env=benv)["total_kib"] for _ in range(args.runs)) / MIB
    if args.tls and not args.no_binary:
        with tempfile.TemporaryDirectory(prefix="ejm-bench-tls-") as tmp:
            cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                            "/CN=localhost", "-days", "1", "-keyout", key, "-out", cert],
                           capture_output=True, check=True)
            for label, path in binaries:
                name = "rss_binary_tls_mib" if label == "dist/jmdaemon" else "compare_rss_binary_tls_mib"
                extra[name] = statistics.median(idle_daemon(
                    [path, "--ssl-cert", cert, "--ssl-key", key], env=benv, amp=False)["total_kib"]
                    for _ in range(args.runs)) / MIB

    steps = import_steps(sys.executable, trace=False)
    traced = {s["key"]: s["self_kib"] for s in import_steps(sys.executable, trace=True)}

    print(f"idle RSS  python -m jmdaemon   {py_rss:5.1f} MiB (median of {args.runs})")
    print(f"          python -OO -m        {oo_rss:5.1f} MiB (median of {args.runs}; "
          f"anon {py_one.get('RssAnon', 0) / MIB:.1f}, file {py_one.get('RssFile', 0) / MIB:.1f})")
    bin_total = bin_parent = bin_child = 0.0
    if bin_runs:
        bin_total = statistics.median(r["total_kib"] for r in bin_runs) / MIB
        procs = bin_runs[0]["procs"]
        bin_parent = procs[0].get("VmRSS", 0) / MIB
        bin_child = sum(p.get("VmRSS", 0) for p in procs[1:]) / MIB
        print(f"          dist/jmdaemon        {bin_total:5.1f} MiB (bootloader {bin_parent:.1f} + "
              f"python {bin_child:.1f}; {binary.stat().st_size} bytes)")

    print("\nby mapping (smaps, one idle daemon; MiB)")
    cols = [("python -OO -m", grouped(py_one["smaps"]))]
    if bin_runs:
        for i, p in enumerate(bin_runs[0]["procs"]):
            cols.append(("binary " + ("bootloader" if i == 0 else "python"), grouped(p["smaps"])))
    names = list(dict.fromkeys(n for _, g in cols for n in g))
    print("  %-50s" % "" + "".join("%18s" % c for c, _ in cols))
    for n in names:
        print("  %-50s" % n + "".join("%18.1f" % (g.get(n, 0) / MIB) for _, g in cols))
    print("  %-50s" % "total" + "".join("%18.1f" % (sum(g.values()) / MIB) for _, g in cols))

    print("\nby import step (python -m jmdaemon's imports in a fresh python -OO; MiB)")
    prev = 0
    figures = {}
    for (key, what, _), s in zip(STEPS, steps, strict=True):
        rss = s["rss"]["VmRSS"]
        delta = (rss - prev) / MIB
        prev = rss
        figures[key] = delta
        top = sorted(traced.get(key, {}).items(), key=lambda kv: -kv[1])[:args.top]
        print(f"  {key:<13} {delta:5.1f}  (total {rss / MIB:5.1f}, {s['modules']} modules)  {what}")
        if top:
            print("                 biggest (KiB of Python objects, self): " +
                  ", ".join(f"{m} {k}" for m, k in top))
    running = oo_rss - prev / MIB
    figures["running"] = running
    print(f"  {'running':<13} {running:5.1f}  (= idle python -OO -m {oo_rss:.1f} - imports "
          f"{prev / MIB:.1f}): reactor running, listening port, logging, server factory, "
          "freed heap released")

    kv = {"rss_python_mib": round(py_rss, 1), "rss_python_oo_mib": round(oo_rss, 1)}
    if bin_runs:
        kv.update(rss_binary_mib=round(bin_total, 1), rss_binary_bootloader_mib=round(bin_parent, 1),
                  rss_binary_python_mib=round(bin_child, 1))
    kv.update({f"{k}_mib": round(v, 1) for k, v in figures.items()})
    if extra:
        print("\nthe binary, 3 s after it listens (median of %d)" % args.runs)
        labels = {"compare_rss_binary_mib": "--compare binary, idle",
                  "rss_binary_tls_mib": "dist/jmdaemon serving AMP over TLS",
                  "compare_rss_binary_tls_mib": "--compare binary serving AMP over TLS"}
        for k, v in extra.items():
            print(f"  {labels[k]:<40} {v:5.1f} MiB")
    kv.update({k: round(v, 1) for k, v in extra.items()})
    print(" ".join(f"{k}={v}" for k, v in kv.items()))


if __name__ == "__main__":
    main()
