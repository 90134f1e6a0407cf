#!/usr/bin/env python3
"""Build ``dist/jmdaemon``: the keyless daemon as one PyInstaller executable.

    python packaging/build_daemon.py [--force] [--out DIR] [--check] [--no-cache] [--onedir]
    make daemon-binary

As reproducible as PyInstaller allows:

* every build input is pinned: ``packaging/requirements-build.txt`` (PyInstaller and the daemon's
  runtime, installed ``--no-deps``, wheels only) into a build venv under
  ``${EJM_CACHE:-~/.cache/electrum-joinmarket}/pyinstaller/`` (never into the project's .venv),
  the base Python (recorded), the spec and entry script in ``packaging/``, and the sources of
  ``jmcore`` and ``jmdaemon`` (staged into a fixed directory, so no checkout path ends up in the
  binary);
* ``PYTHONHASHSEED=0`` (set/frozenset order in marshalled code), ``SOURCE_DATE_EPOCH`` = the
  commit time of HEAD (``git log -1 --format=%ct``), fixed work paths, ``TZ=UTC``, ``LC_ALL=C``,
  no UPX; binaries stripped (``strip`` is deterministic).

``--onedir`` builds the one-folder alternative into ``<out>/jmdaemon-onedir/`` (always fresh, not
cached; for the measurements in packaging/README.md): nothing is unpacked at start, but it is a
folder, not one file.

Caching: the *inputs hash* (sha256 over every input file, the pins and the base Python) keys
a copy of each finished binary under the cache dir, so a fresh checkout with a warm cache gets
``dist/jmdaemon`` by a copy, and an unchanged tree does nothing at all. ``dist/jmdaemon.build.json``
records the hash, versions, commit, SOURCE_DATE_EPOCH and the binary's sha256.

Exit status: 0 built or up to date; 1 build failed; with ``--check`` 0 = up to date, 3 = stale.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packaging"))
from buildcommon import git, source_date_epoch  # noqa: E402

HERE = ROOT / "packaging"
REQUIREMENTS = HERE / "requirements-build.txt"
SPEC = HERE / "jmdaemon.spec"
ENTRY = HERE / "jmdaemon_entry.py"
PACKAGES = ("jmcore", "jmdaemon")
NAME = "jmdaemon"


def log(msg: str) -> None:
    print(f"[daemon-binary] {msg}", file=sys.stderr, flush=True)


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("EJM_CACHE") or
                        os.path.expanduser("~/.cache/electrum-joinmarket")) / "pyinstaller"


def source_files() -> list[pathlib.Path]:
    """The daemon's sources (``*.py`` of jmcore and jmdaemon), sorted, no caches."""
    files = []
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            if "__pycache__" not in p.parts:
                files.append(p)
    return files


def base_python(explicit: str | None) -> tuple[str, str]:
    """(path, version string) of the interpreter the build venv is made from.

    Default: ``$EJM_PYTHON``, else the base interpreter of the Python running this script (so
    ``make daemon-binary`` and the test session's build agree)."""
    exe = str(explicit or os.environ.get("EJM_PYTHON")
              or getattr(sys, "_base_executable", sys.executable))
    out = subprocess.run([exe, "-c", "import sys, platform; print(getattr(sys, '_base_executable', "
                                     "sys.executable)); print(sys.version.replace(chr(10), ' ') + "
                                     "' ' + platform.machine())"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    return os.path.realpath(out[0]), out[1]


def inputs_hash(py_version: str) -> str:
    h = hashlib.sha256()
    h.update(b"python\0" + py_version.encode() + b"\0")
    for p in [REQUIREMENTS, SPEC, ENTRY, pathlib.Path(__file__).resolve()] + source_files():
        rel = p.relative_to(ROOT).as_posix()
        h.update(rel.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def sha256_file(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_version() -> str:
    text = (ROOT / "jmdaemon" / "__init__.py").read_text()
    for line in text.splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return "unknown"


@contextlib.contextmanager
def locked(path: pathlib.Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def venv_path(cache: pathlib.Path, py_version: str) -> pathlib.Path:
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + py_version.encode()).hexdigest()[:16]
    return cache / f"venv-{key}"


def ensure_venv(cache: pathlib.Path, py: str, py_version: str) -> pathlib.Path:
    venv = venv_path(cache, py_version)
    stamp = venv / ".ejm-complete"
    if stamp.exists():
        return venv
    log(f"creating build venv {venv} (pinned {REQUIREMENTS.name})")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([py, "-m", "venv", str(venv)], check=True)
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR", str(cache.parent / "pip")))
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--only-binary=:all:",
                        "-r", str(REQUIREMENTS)], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        noise = "is ignored: it is neither a file nor a directory"
        sys.stderr.write("\n".join(l for l in (r.stdout + r.stderr).splitlines() if noise not in l))
        raise SystemExit(f"[daemon-binary] pip install into {venv} failed")
    check = subprocess.run([str(venv / "bin" / "pip"), "check"], capture_output=True, text=True)
    if check.returncode != 0:
        raise SystemExit(f"[daemon-binary] pinned requirements are inconsistent:\n{check.stdout}")
    stamp.write_text(json.dumps({"python": py_version, "requirements": REQUIREMENTS.read_text()}))
    return venv


def stage_sources(dest: pathlib.Path, epoch: int) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    for src in source_files():
        rel = src.relative_to(ROOT)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        os.utime(target, (epoch, epoch))


def pyinstaller_build(cache: pathlib.Path, venv: pathlib.Path, epoch: int,
                      onedir: bool = False) -> pathlib.Path:
    suffix = "-onedir" if onedir else ""
    src, work, dist = cache / "src", cache / ("work" + suffix), cache / ("dist" + suffix)
    stage_sources(src, epoch)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(dist, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYI"))}
    env.update(PYTHONHASHSEED="0", SOURCE_DATE_EPOCH=str(epoch), TZ="UTC", LC_ALL="C.UTF-8",
               EJM_SRC=str(src), PYTHONDONTWRITEBYTECODE="1",
               PYINSTALLER_CONFIG_DIR=str(cache / "pyi-config"), EJM_ONEDIR="1" if onedir else "0")
    cmd = [str(venv / "bin" / "pyinstaller"), "--noconfirm", "--clean", "--log-level", "WARN",
           "--distpath", str(dist), "--workpath", str(work), str(SPEC)]
    log("running PyInstaller (PYTHONHASHSEED=0, SOURCE_DATE_EPOCH=%d)" % epoch)
    r = subprocess.run(cmd, env=env, cwd=str(cache), capture_output=True, text=True)
    built = dist / NAME / NAME if onedir else dist / NAME
    if r.returncode != 0 or not built.is_file():
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-8000:])
        raise SystemExit("[daemon-binary] PyInstaller failed")
    return built


def build_onedir(out: pathlib.Path, python: str | None = None) -> pathlib.Path:
    """The one-folder build, fresh, copied to ``out/jmdaemon-onedir/``; returns its executable."""
    cache = cache_dir()
    py, py_version = base_python(python)
    with locked(cache / "build.lock"):
        venv = ensure_venv(cache, py, py_version)
        built = pyinstaller_build(cache, venv, source_date_epoch(), onedir=True)
        target = out / (NAME + "-onedir")
        shutil.rmtree(target, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copytree(built.parent, target, symlinks=True)
    log(f"{target}: one-folder build")
    return target / NAME


def build(out: pathlib.Path, *, force: bool = False, use_cache: bool = True,
          python: str | None = None) -> pathlib.Path:
    cache = cache_dir()
    py, py_version = base_python(python)
    digest = inputs_hash(py_version)
    target, meta_path = out / NAME, out / f"{NAME}.build.json"
    with locked(cache / "build.lock"):
        if not force and target.is_file() and meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
            except ValueError:
                meta = {}
            if meta.get("inputs_hash") == digest and meta.get("sha256") == sha256_file(target):
                log(f"{target} is up to date ({digest[:12]})")
                return target
        cached = cache / "out" / digest
        epoch = source_date_epoch()
        if use_cache and not force and (cached / NAME).is_file() and (cached / "build.json").is_file():
            log(f"copying cached build {digest[:12]} to {target}")
        else:
            t0 = time.monotonic()
            venv = ensure_venv(cache, py, py_version)
            binary = pyinstaller_build(cache, venv, epoch)
            pyi_version = subprocess.run([str(venv / "bin" / "python"), "-c",
                                          "import PyInstaller; print(PyInstaller.__version__)"],
                                         capture_output=True, text=True).stdout.strip()
            dirty = git("status", "--porcelain", "--", *PACKAGES, "packaging")
            meta = {
                "name": NAME, "version": read_version(), "inputs_hash": digest,
                "sha256": sha256_file(binary), "size": binary.stat().st_size,
                "commit": git("rev-parse", "HEAD"), "source_date_epoch": epoch,
                "sources_dirty": bool(dirty), "python": py_version, "pyinstaller": pyi_version,
                "build_seconds": round(time.monotonic() - t0, 1),
            }
            tmp = cache / "out" / (digest + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            shutil.copy2(binary, tmp / NAME)
            (tmp / "build.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
            if use_cache:
                shutil.rmtree(cached, ignore_errors=True)
                tmp.rename(cached)
            else:
                cached = tmp
            if dirty:
                log("note: jmcore/jmdaemon/packaging have uncommitted changes; this binary is not "
                    "the build of commit " + meta["commit"][:12])
        out.mkdir(parents=True, exist_ok=True)
        part = out / (NAME + ".part")
        shutil.copyfile(cached / NAME, part)
        os.chmod(part, 0o755)
        os.replace(part, target)
        shutil.copyfile(cached / "build.json", meta_path)
        if not use_cache:
            shutil.rmtree(cached, ignore_errors=True)
        meta = json.loads(meta_path.read_text())
        log(f"{target}: {meta['size']} bytes, sha256 {meta['sha256']}")
        return target


TOC_SCRIPT = r"""
import io, json, sys, zipfile
from PyInstaller.archive.readers import CArchiveReader
arch = CArchiveReader(sys.argv[1])
entries = sorted([name, v[-1]] for name, v in arch.toc.items())
pyz = []
for name, code in entries:
    if code == "z":
        pyz += sorted(arch.open_embedded_archive(name).toc)
base = []
if "base_library.zip" in arch.toc:
    with zipfile.ZipFile(io.BytesIO(arch.extract("base_library.zip"))) as zf:
        base = sorted(zf.namelist())
json.dump({"entries": entries, "pyz": pyz, "base_library": base, "options": arch.options},
          sys.stdout)
"""


def table_of_contents(binary: pathlib.Path, python: str | None = None) -> dict:
    """PyInstaller's own reading of ``binary``: CArchive entries ([name, typecode]), the module
    names in its PYZ, the members of base_library.zip and the bootloader's run-time options
    (``O`` = one ``-O`` of the interpreter; run in the build venv)."""
    py, py_version = base_python(python)
    venv = ensure_venv(cache_dir(), py, py_version)
    r = subprocess.run([str(venv / "bin" / "python"), "-c", TOC_SCRIPT, str(binary)],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def is_stale(out: pathlib.Path, python: str | None = None) -> bool:
    target, meta_path = out / NAME, out / f"{NAME}.build.json"
    if not (target.is_file() and meta_path.is_file()):
        return True
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError:
        return True
    return meta.get("inputs_hash") != inputs_hash(base_python(python)[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "dist"), help="output dir (default dist/)")
    ap.add_argument("--force", action="store_true", help="rebuild even if up to date")
    ap.add_argument("--no-cache", action="store_true",
                    help="neither use nor fill the binary cache (a truly fresh build)")
    ap.add_argument("--python", help="base interpreter for the build venv")
    ap.add_argument("--check", action="store_true", help="only report: exit 0 fresh, 3 stale")
    ap.add_argument("--toc", metavar="BINARY", help="print the binary's table of contents (JSON)")
    ap.add_argument("--onedir", action="store_true",
                    help="build the one-folder alternative into <out>/jmdaemon-onedir/ instead")
    args = ap.parse_args(argv)
    if args.toc:
        json.dump(table_of_contents(pathlib.Path(args.toc), args.python), sys.stdout, indent=1)
        print()
        return 0
    out = pathlib.Path(args.out).resolve()
    if args.onedir:
        build_onedir(out, args.python)
        return 0
    if args.check:
        stale = is_stale(out, args.python)
        log(f"{out / NAME}: {'stale' if stale else 'up to date'}")
        return 3 if stale else 0
    build(out, force=args.force or args.no_cache, use_cache=not args.no_cache, python=args.python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
