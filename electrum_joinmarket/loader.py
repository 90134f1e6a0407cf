"""Make a running Electrum (4.6+, tested on 4.8) load this folder as the plugin ``joinmarket``.

How Electrum 4.6+ finds plugins (``electrum/plugin.py``):

* **Directory plugins** are found only by ``Plugins.find_directory_plugins(pkg_path)`` over
  Electrum's own ``electrum/plugins/`` (the *internal* plugins).  The plugin's name is the
  **folder name**: ``PluginMetadata.from_json(manifest, name=<folder>, ...)`` overrides the
  manifest's ``"name"``.  Its init module is imported as ``electrum.plugins.<name>`` through
  ``importlib.util.find_spec`` (i.e. via ``electrum.plugins.__path__``), the GUI module as
  ``electrum.plugins.<name>.<qt|cmdline>``.  External directory plugins are not loaded at all
  (``is_authorized`` is False for them).
* **Zip plugins** (``<electrum_path>/plugins/*.zip``) are named by the manifest, imported as
  ``electrum_external_plugins.<name>``, and load only when authorized (not as root).

So pointing Electrum at the folder ``electrum_joinmarket`` would give a plugin called
``electrum_joinmarket`` (config key ``plugins.electrum_joinmarket.enabled``), not ``joinmarket``.
:func:`register_runtime` instead

1. installs a ``sys.meta_path`` finder that answers ``electrum.plugins.joinmarket`` with this
   folder as a package (``__path__ = [PLUGIN_ROOT]``), so ``electrum.plugins.joinmarket.cmdline``
   and ``.qt`` resolve to our files through the normal path finder; and
2. wraps ``Plugins.find_plugins`` so that, after Electrum's own discovery, our manifest is
   registered under its own name as an internal directory plugin, with the filters Electrum
   applies itself (``cmd_only`` ⇒ only if enabled; GUI in ``available_for``; min/max version;
   an already-registered ``joinmarket`` — symlink install or zip — wins).

It must run before ``Plugins()`` is constructed; it is idempotent and touches no file.
``python -m electrum_joinmarket.loader [electrum args]`` registers and then runs Electrum's own
``electrum`` script (the launcher for distro/source installs).
"""
from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import runpy
import shutil
import sys
import threading
from typing import Any, Optional, Sequence

__all__ = ["PLUGIN_ROOT", "PLUGIN_NAME", "MODULE_NAME", "register_runtime", "unregister_runtime",
           "is_registered", "read_manifest", "enable_key", "find_electrum_script", "launch"]

PLUGIN_ROOT = os.path.dirname(os.path.abspath(__file__))
PLUGIN_NAME = "joinmarket"
MODULE_NAME = f"electrum.plugins.{PLUGIN_NAME}"

_lock = threading.Lock()
_finder: Optional["_PluginFinder"] = None
_original_find_plugins: Any = None


def read_manifest() -> dict:
    """Our ``manifest.json`` (its ``name`` is the plugin name Electrum must use)."""
    with open(os.path.join(PLUGIN_ROOT, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def enable_key(name: str = PLUGIN_NAME) -> str:
    """The config key that enables the plugin (``use_<name>`` before 4.6)."""
    from electrum.version import ELECTRUM_VERSION
    major, minor = (int(x) for x in ELECTRUM_VERSION.split(".")[:2])
    return f"plugins.{name}.enabled" if (major, minor) >= (4, 6) else f"use_{name}"


class _PluginFinder(importlib.abc.MetaPathFinder):
    """Resolves ``electrum.plugins.joinmarket`` to PLUGIN_ROOT (only that one name)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname != MODULE_NAME:
            return None
        import electrum.plugins
        for base in electrum.plugins.__path__:            # a symlink/copy install wins
            if os.path.isdir(os.path.join(base, PLUGIN_NAME)):
                return None
        return importlib.util.spec_from_file_location(
            fullname, os.path.join(PLUGIN_ROOT, "__init__.py"),
            submodule_search_locations=[PLUGIN_ROOT])


def _add_our_metadata(plugins: Any) -> None:
    """Register our manifest in ``plugins`` the way ``find_directory_plugins`` would, but under
    the manifest's name."""
    from electrum.plugin import PluginMetadata
    manifest = read_manifest()
    name = manifest["name"]
    if name in plugins.internal_plugin_metadata or name in plugins.external_plugin_metadata:
        return
    if plugins.cmd_only and plugins.config.get(f"plugins.{name}.enabled") is not True:
        return
    meta = PluginMetadata.from_json(manifest, name=name, path=PLUGIN_ROOT)
    if not meta.is_electrum_version_compatible():
        plugins.logger.warning(f"plugin {name}: not compatible with this Electrum version")
        return
    if not plugins.cmd_only and plugins.gui_name not in meta.available_for:
        return
    plugins.internal_plugin_metadata[name] = meta


def register_runtime() -> str:
    """Make Electrum's ``Plugins`` find this folder as plugin ``joinmarket``; returns the name.

    Call before ``electrum.plugin.Plugins(...)`` is created (Electrum's launcher creates one with
    ``cmd_only=True`` before parsing the command line).  Raises RuntimeError on an Electrum
    without directory-plugin discovery (< 4.6).
    """
    global _finder, _original_find_plugins
    from electrum.plugin import Plugins
    if not hasattr(Plugins, "find_directory_plugins"):
        raise RuntimeError("electrum_joinmarket needs Electrum 4.6 or newer (4.8 tested)")
    manifest = read_manifest()
    if manifest.get("name") != PLUGIN_NAME:
        raise RuntimeError(f"manifest name {manifest.get('name')!r} != {PLUGIN_NAME!r}")
    with _lock:
        if _finder is None:
            _finder = _PluginFinder()
            sys.meta_path.insert(0, _finder)
        if _original_find_plugins is None:
            original = Plugins.find_plugins

            @functools.wraps(original)
            def find_plugins(self: Any) -> None:
                original(self)
                try:
                    _add_our_metadata(self)
                except Exception as exc:   # never break Electrum's startup
                    self.logger.exception(f"joinmarket: runtime registration failed: {exc!r}")

            find_plugins._joinmarket_runtime = True  # type: ignore[attr-defined]
            _original_find_plugins = original
            Plugins.find_plugins = find_plugins
            _wrap_read_file(Plugins)
    return PLUGIN_NAME


def _wrap_read_file(Plugins: Any) -> None:
    """``Plugins.read_file`` reads an internal plugin's files (its icon) from Electrum's own
    ``electrum/plugins/<name>/``; ours registered at run time lives in PLUGIN_ROOT."""
    original = Plugins.read_file
    if getattr(original, "_joinmarket_runtime", False):
        return

    @functools.wraps(original)
    def read_file(self: Any, name: str, filename: str) -> bytes:
        meta = self.internal_plugin_metadata.get(name)
        if name == PLUGIN_NAME and meta is not None and meta.path == PLUGIN_ROOT:
            path = os.path.normpath(os.path.join(PLUGIN_ROOT, filename))
            if os.path.dirname(path) != PLUGIN_ROOT:
                raise FileNotFoundError(filename)      # only the plugin's own top-level files
            with open(path, "rb") as f:
                return f.read()
        return original(self, name, filename)

    read_file._joinmarket_runtime = True  # type: ignore[attr-defined]
    Plugins.read_file = read_file


def is_registered() -> bool:
    from electrum.plugin import Plugins
    return bool(getattr(Plugins.find_plugins, "_joinmarket_runtime", False)) and _finder in sys.meta_path


def unregister_runtime() -> None:
    """Undo :func:`register_runtime` for future ``Plugins()`` (modules already imported stay)."""
    global _finder, _original_find_plugins
    from electrum.plugin import Plugins
    with _lock:
        if _original_find_plugins is not None:
            Plugins.find_plugins = _original_find_plugins
            _original_find_plugins = None
        if _finder is not None:
            try:
                sys.meta_path.remove(_finder)
            except ValueError:
                pass
            _finder = None


def find_electrum_script() -> Optional[str]:
    """The ``electrum`` launcher script: ``$EJM_ELECTRUM_SCRIPT``, beside the imported electrum
    package (``…/usr/lib/python3/dist-packages/electrum`` → ``…/usr/bin/electrum``), or on PATH."""
    env = os.environ.get("EJM_ELECTRUM_SCRIPT")
    if env and os.path.isfile(env):
        return env
    try:
        import electrum
        pkg = os.path.dirname(os.path.abspath(electrum.__file__))
        cand = os.path.normpath(os.path.join(pkg, "..", "..", "..", "..", "bin", "electrum"))
        if os.path.isfile(cand):
            return cand
        cand = os.path.join(os.path.dirname(pkg), "run_electrum")   # source checkout
        if os.path.isfile(cand):
            return cand
    except ImportError:
        pass
    return shutil.which("electrum")


def launch(argv: Optional[Sequence[str]] = None) -> None:
    """Register the plugin, then run Electrum's own ``electrum`` script with ``argv``."""
    script = find_electrum_script()
    if script is None:
        raise SystemExit("electrum_joinmarket.loader: cannot find the 'electrum' script "
                         "(set EJM_ELECTRUM_SCRIPT)")
    register_runtime()
    sys.argv = [script, *(sys.argv[1:] if argv is None else argv)]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    launch()
