"""Paths and loaders shared by the packaging tests (the build fixtures are in conftest.py)."""
from __future__ import annotations

import importlib.util
import pathlib
from types import ModuleType

ROOT = pathlib.Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"


def load_packaging_module(name: str) -> ModuleType:
    """packaging/<name>.py as a module (packaging/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"_ejm_packaging_{name}",
                                                  ROOT / "packaging" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
