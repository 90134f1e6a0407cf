#!/usr/bin/env python3
"""Build ``dist/joinmarket-<version>.zip``: the plugin as an Electrum 4.8 external zip plugin.

    python packaging/build_plugin_zip.py [--out DIR]
    make plugin-zip

Layout (what Electrum's ``Plugins.read_manifest``/``MemoryZipImporter`` expect, 4.8.3
``electrum/plugin.py``): one top-level folder, named like the plugin, whose ``manifest.json``
is the archive's first member (Electrum takes the *first* member ending in ``manifest.json``,
and the folder holding it becomes the package ``electrum_external_plugins.<name>``)::

    joinmarket/manifest.json       the plugin's manifest (name, version, min Electrum ...)
    joinmarket/__init__.py         the plugin's __init__.py + a guarded call to _zipimports
    joinmarket/_zipimports.py      packaging/zipimports.py: electrum_joinmarket.* and jmcore.*
                                   resolve to this zip (Electrum's in-memory importer)
    joinmarket/**/*.py             the plugin's modules and subpackages (not loader.py, the
                                   dev-install launcher)
    joinmarket/jmcore/*.py         jmcore, vendored (stdlib only)

Nothing else (no tests, no jmdaemon, no caches). Next to the zip: ``install_zip_plugin.py``
(packaging/), the documented headless equivalent of Electrum's "Add plugin" dialog.
Reproducible: members sorted (manifest first),
timestamps = SOURCE_DATE_EPOCH (commit time of HEAD), mode 0644, fixed compression level; the
archive comment names version and commit. Each rebuild with different content needs a new
authorization in Electrum (the signature covers the zip's sha256).
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import io
import json
import os
import pathlib
import re
import sys
import time
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packaging"))
from buildcommon import git, source_date_epoch  # noqa: E402

PLUGIN_DIR = ROOT / "electrum_joinmarket"
JMCORE_DIR = ROOT / "jmcore"
SHIM = ROOT / "packaging" / "zipimports.py"
INSTALLER = ROOT / "packaging" / "install_zip_plugin.py"   # shipped next to the zip (headless install)
EXCLUDE = {"loader.py"}          # registers a source checkout at run time; useless in a zip
PRELUDE = '''\
# --- added by packaging/build_plugin_zip.py (not in the source tree): make the plugin's absolute
# imports (electrum_joinmarket.*, jmcore.*) resolve inside this zip. Guarded: an error here must
# never stop Electrum from starting.
# ("from ._zipimports import ..." and not "from . import _zipimports": the latter makes Python
# import the top-level package "electrum_external_plugins", which does not exist.)
try:
    from ._zipimports import install as _ejm_install
    _ejm_install(__name__)
    del _ejm_install
except Exception as _ejm_exc:  # pragma: no cover
    try:
        import logging as _ejm_logging
        _ejm_logging.getLogger(__name__).exception("joinmarket: zip import shim failed: %r", _ejm_exc)
    except Exception:
        pass
# --- end of addition
'''


def log(msg: str) -> None:
    print(f"[plugin-zip] {msg}", file=sys.stderr, flush=True)


def with_prelude(init_source: str) -> str:
    """``__init__.py`` with PRELUDE after its docstring and ``from __future__`` imports."""
    tree = ast.parse(init_source)
    after = 0
    for i, node in enumerate(tree.body):
        is_doc = (i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                  and isinstance(node.value.value, str))
        is_future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
        if is_doc or is_future:
            after = node.end_lineno or after
        else:
            break
    lines = init_source.splitlines(keepends=True)
    head, tail = "".join(lines[:after]), "".join(lines[after:])
    if head and not head.endswith("\n"):
        head += "\n"
    return head + "\n" + PRELUDE + "\n" + tail


def plugin_versions() -> dict:
    manifest = json.loads((PLUGIN_DIR / "manifest.json").read_text())
    found = {"manifest": manifest.get("version")}
    m = re.search(r'^PLUGIN_VERSION\s*=\s*["\']([^"\']+)', (PLUGIN_DIR / "plugin.py").read_text(), re.M)
    if m:
        found["plugin.py"] = m.group(1)
    m = re.search(r'version\s*=\s*["\']([^"\']+)', (ROOT / "setup.py").read_text())
    if m:
        found["setup.py"] = m.group(1)
    return found


def members() -> list[tuple[str, bytes]]:
    """(archive name, bytes) of every member, manifest first, the rest sorted."""
    manifest = json.loads((PLUGIN_DIR / "manifest.json").read_text())
    name = manifest["name"]
    out: dict[str, bytes] = {}
    for p in sorted(PLUGIN_DIR.rglob("*")):
        rel = p.relative_to(PLUGIN_DIR).as_posix()
        if (p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".png", ".svg")
                and rel not in EXCLUDE):
            data = p.read_bytes()
            if rel == "__init__.py":
                data = with_prelude(data.decode("utf-8")).encode("utf-8")
            out[f"{name}/{rel}"] = data
    for p in sorted(JMCORE_DIR.rglob("*.py")):
        if "__pycache__" not in p.parts:
            out[f"{name}/jmcore/{p.relative_to(JMCORE_DIR).as_posix()}"] = p.read_bytes()
    out[f"{name}/_zipimports.py"] = SHIM.read_bytes()
    assert f"{name}/manifest.json" not in out
    first = (f"{name}/manifest.json", (PLUGIN_DIR / "manifest.json").read_bytes())
    rest = sorted(out.items())
    for arcname, _ in rest:
        assert not arcname.endswith("manifest.json"), arcname   # Electrum takes the first one
    return [first] + rest


def build(out_dir: pathlib.Path) -> pathlib.Path:
    manifest = json.loads((PLUGIN_DIR / "manifest.json").read_text())
    name, version = manifest["name"], manifest["version"]
    versions = plugin_versions()
    if len(set(versions.values())) != 1:
        log(f"WARNING: versions disagree: {versions}")
    epoch = source_date_epoch()
    date_time = time.gmtime(epoch)[:6]
    commit = git("rev-parse", "HEAD")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for arcname, data in members():
            info = zipfile.ZipInfo(arcname, date_time=date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3                    # unix, so external_attr means mode bits
            info.external_attr = (0o100644 << 16)
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
        zf.comment = f"electrum-joinmarket plugin {name} {version} commit {commit[:12]}".encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}-{version}.zip"
    part = target.with_suffix(".zip.part")
    part.write_bytes(buf.getvalue())
    os.replace(part, target)
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    log(f"{target}: {len(buf.getvalue())} bytes, sha256 {digest}")
    installer = out_dir / INSTALLER.name
    installer.write_bytes(INSTALLER.read_bytes())
    os.chmod(installer, 0o755)
    log(f"{installer}: headless install (see its --help)")
    return target


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "dist"))
    args = ap.parse_args(argv)
    build(pathlib.Path(args.out).resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
