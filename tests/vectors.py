"""Where the protocol test vectors live: ``tests/vectors/`` in this repository (see its README for
what each file holds and which reference code produced it); ``$EJM_VECTORS_DIR`` overrides that,
e.g. to check the code against a newer set. Missing vectors fail, never skip."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE / "vectors"


def vectors_dir() -> Path:
    env = os.environ.get("EJM_VECTORS_DIR")
    path = Path(env) if env else DEFAULT_DIR
    if not (path / "amp_commands.json").is_file():
        hint = ("unset EJM_VECTORS_DIR to use tests/vectors/" if env
                else "tests/vectors/ is part of the repository")
        raise FileNotFoundError(f"protocol vectors not found in {path} ({hint})")
    return path


VECTORS = vectors_dir()


def load(name: str) -> Any:
    """The parsed JSON of one vector file, e.g. ``load("nicks.json")``."""
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))
