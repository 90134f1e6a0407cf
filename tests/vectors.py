"""Where the protocol test vectors live: ``$EJM_VECTORS_DIR``, else ``../shared/protocol/vectors``
beside the repository (as on developer machines and in CI). Missing vectors fail, never skip."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def vectors_dir() -> Path:
    env = os.environ.get("EJM_VECTORS_DIR")
    path = Path(env) if env else ROOT.parent / "shared" / "protocol" / "vectors"
    if not (path / "amp_commands.json").is_file():
        raise FileNotFoundError(f"protocol vectors not found in {path}; set EJM_VECTORS_DIR")
    return path


VECTORS = vectors_dir()


def load(name: str) -> Any:
    """The parsed JSON of one vector file, e.g. ``load("nicks.json")``."""
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))
