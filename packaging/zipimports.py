"""Inside the zip plugin: make ``electrum_joinmarket.*`` and ``jmcore.*`` resolve to the zip.

(Copied into the zip as ``joinmarket/_zipimports.py`` by ``packaging/build_plugin_zip.py``; the
zip's ``__init__.py`` gets a guarded call to :func:`install` right after its docstring. This file
is not part of the editable install and not imported from the source tree.)

Electrum >= 4.6 loads a zip plugin as the package ``electrum_external_plugins.<name>`` through its
``MemoryZipImporter`` (4.8: ``electrum/zip_importer.py``): the archive is read into memory once,
after its sha256 was checked against the authorized signature, and every module of
``<name>/`` inside the zip is served from those bytes. The plugin's code, however, imports
itself absolutely (``from electrum_joinmarket.plugin import ...``) and imports ``jmcore``, which
the zip carries as the subpackage ``<name>/jmcore``. :func:`install` puts a finder first on
``sys.meta_path`` that answers

    electrum_joinmarket[.X]  ->  electrum_external_plugins.<name>[.X]
    jmcore[.X]               ->  electrum_external_plugins.<name>.jmcore[.X]

by importing the real module through Electrum's importer and registering the *same module
object* under the alias (so every module exists once, and only code from the authorized
archive runs: nothing is read from disk again, nothing from site-packages is mixed in).
A top-level name that is already imported when the zip loads (a developer install in the same
process) is left alone, with a log line.

It also registers an empty package ``electrum_external_plugins`` in ``sys.modules`` if Electrum
has not (4.8.3 does not): without it, ``from . import x`` / ``from pkg import submodule`` inside a
zip plugin fail with ``No module named 'electrum_external_plugins'``, because Python's
``__import__`` of ``a.b.c`` ends by importing the top-level ``a`` (an Electrum quirk, worth
reporting upstream).
"""
import importlib
import importlib.abc
import importlib.util
import logging
import sys

ALIASES = ("electrum_joinmarket", "jmcore")
_log = logging.getLogger(__name__)


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, real: str) -> None:
        self.real = real

    def create_module(self, spec):
        # module_from_spec keeps the real module's __name__/__spec__/__path__/__file__
        return importlib.import_module(self.real)

    def exec_module(self, module) -> None:
        pass   # already executed under its real name


class ZipAliasFinder(importlib.abc.MetaPathFinder):
    def __init__(self, base: str, names=ALIASES) -> None:
        self.base = base
        self.targets = {"electrum_joinmarket": base, "jmcore": base + ".jmcore"}
        self.targets = {k: v for k, v in self.targets.items() if k in names}

    def real_name(self, fullname: str):
        head, _, rest = fullname.partition(".")
        target = self.targets.get(head)
        if target is None:
            return None
        return target + ("." + rest if rest else "")

    def find_spec(self, fullname, path=None, target=None):
        real = self.real_name(fullname)
        if real is None:
            return None
        base_module = sys.modules.get(self.base)
        zip_loader = getattr(base_module, "__loader__", None)
        finder = getattr(zip_loader, "find_spec", None)
        real_spec = finder(real) if finder is not None else None
        if real_spec is None:
            return None   # not in the zip: ModuleNotFoundError, never a fallback to disk
        return importlib.util.spec_from_loader(
            fullname, _AliasLoader(real),
            is_package=real_spec.submodule_search_locations is not None)


def _ensure_parent_packages(base: str) -> None:
    import importlib.machinery
    import types
    parts = base.split(".")
    for i in range(1, len(parts)):
        name = ".".join(parts[:i])
        if name in sys.modules:
            continue
        mod = types.ModuleType(name, "parent package of Electrum's zip plugins (joinmarket shim)")
        mod.__path__ = []        # nothing found through it: the zip importer answers submodules
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        mod.__spec__.submodule_search_locations = []
        sys.modules[name] = mod
    for i in range(1, len(parts)):
        parent, child = ".".join(parts[:i]), ".".join(parts[:i + 1])
        if child in sys.modules and not hasattr(sys.modules[parent], parts[i]):
            setattr(sys.modules[parent], parts[i], sys.modules[child])


def install(base: str) -> "ZipAliasFinder | None":
    """Install the alias finder for the plugin package ``base`` (idempotent)."""
    _ensure_parent_packages(base)
    for f in sys.meta_path:
        if isinstance(f, ZipAliasFinder) or type(f).__name__ == "ZipAliasFinder":
            return None
    names = []
    for name in ALIASES:
        if name in sys.modules:
            _log.warning("joinmarket zip plugin: %s is already imported from %s; using it",
                         name, getattr(sys.modules[name], "__file__", "?"))
        else:
            names.append(name)
    finder = ZipAliasFinder(base, names)
    sys.meta_path.insert(0, finder)
    return finder
