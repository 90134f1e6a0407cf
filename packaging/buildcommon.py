"""Helpers shared by the packaging scripts (standard library only)."""
from __future__ import annotations

import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
ZIP_EPOCH = 315532800          # 1980-01-01: the earliest time a zip entry can hold


def git(*args: str) -> str:
    """Output of ``git -C ROOT args`` ('' if git or the repository is unavailable)."""
    try:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def source_date_epoch() -> int:
    """$SOURCE_DATE_EPOCH, else the last commit's time, never before the zip epoch."""
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        return int(os.environ["SOURCE_DATE_EPOCH"])
    ct = git("log", "-1", "--format=%ct")
    return max(int(ct) if ct.isdigit() else 0, ZIP_EPOCH)
