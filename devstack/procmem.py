"""What a running process holds in memory, read from /proc (Linux): RSS, the process tree (a
one-file PyInstaller binary is a bootloader with the Python process as its child), the shared
libraries it has mapped, and an smaps breakdown of its resident memory by mapping."""
from __future__ import annotations

import collections
import pathlib
import re


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB (0 if it is gone)."""
    return status(pid).get("VmRSS", 0)


def status(pid: int) -> dict[str, int]:
    """The ``kB`` fields of /proc/<pid>/status (VmRSS, RssAnon, RssFile, RssShmem, ...)."""
    out = {}
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB":
                out[key] = int(parts[0])
    except OSError:
        pass
    return out


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
            out += [int(x) for x in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def mapped_files(pid: int) -> set[str]:
    """Paths of the files ``pid`` has mapped (shared libraries, extension modules)."""
    out = set()
    try:
        for line in pathlib.Path(f"/proc/{pid}/maps").read_text().splitlines():
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/"):
                out.add(parts[5].strip())
    except OSError:
        pass
    return out


_HEADER = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


def smaps_rss(pid: int) -> dict[str, int]:
    """Resident KiB per mapping name: a file path, ``[heap]``, ``[stack]``, or ``[anon]`` for
    anonymous mappings (Python's object arenas and malloc's mmaps live there)."""
    out: collections.Counter = collections.Counter()
    name = None
    try:
        text = pathlib.Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return {}
    for line in text.splitlines():
        if _HEADER.match(line):
            parts = line.split(None, 5)
            name = parts[5].strip() if len(parts) == 6 else "[anon]"
        elif line.startswith("Rss:") and name is not None:
            out[name] += int(line.split()[1])
    return dict(out)
