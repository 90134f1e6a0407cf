"""The maker's commitment blacklist (docs/protocol.md §7.5, §7.6, §13).

Commitments are compared in canonical form: lower-case hex of exactly 32 bytes (64 chars). The
list is persisted as newline-separated lower-case hex (Ref's ``commitmentlist`` format); entries of
an old file in other case are canonicalised when loaded.
"""
from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

DEFAULT_LOCATION = os.path.join("cmtdata", "commitmentlist")


def confined_path(datadir: str, location: object) -> tuple[str, bool]:
    """The blacklist file for a client-chosen ``location``, confined to ``datadir`` (D12).

    Invariant: the returned path, with every symlink resolved, lies strictly inside the
    real path of ``datadir``. A relative location is taken relative to the data dir (Ref sends
    ``cmtdata/commitmentlist``); an absolute one is accepted only if it already points inside it.
    Returns ``(path, refused)``: for a location that escapes the data dir (``..``, an absolute path
    elsewhere, a symlink out, the data dir itself) the default ``<datadir>/cmtdata/commitmentlist``
    and ``refused=True``.
    """
    root = os.path.realpath(datadir)
    default = os.path.join(root, DEFAULT_LOCATION)
    if not isinstance(location, str) or not location.strip() or "\x00" in location:
        return default, bool(location)
    candidate = location if os.path.isabs(location) else os.path.join(root, location)
    real = os.path.realpath(candidate)
    if os.path.commonpath([root, real]) != root or real == root or os.path.isdir(real):
        return default, True
    return real, False


def canonical_commitment(text: object) -> str | None:
    """Lower-case 64-char hex of a commitment, or None if it is not 32 bytes of hex."""
    if not isinstance(text, str) or len(text) != 64:
        return None
    try:
        return bytes.fromhex(text).hex()
    except ValueError:
        return None


class CommitmentBlacklist:
    def __init__(self, path: str | None = None, max_entries: int = 1_000_000) -> None:
        self.path = path
        self.max_entries = max_entries
        self._set: set[str] = set()
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._load()

    def _load(self) -> None:
        if not self.path or not os.path.isfile(self.path):
            return
        try:
            st = os.stat(self.path)
            with open(self.path, "rb") as f:
                for raw in f:
                    c = canonical_commitment(raw.decode("ascii", "replace").strip())
                    if c:
                        self._set.add(c)
            self._mtime = st.st_mtime
        except OSError as exc:
            log.warning("cannot read commitment blacklist %s: %s", self.path, exc)

    def _refresh(self) -> None:
        """Pick up entries added by another daemon connection sharing the same file."""
        if not self.path:
            return
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError:
            return
        if mtime != self._mtime:
            self._load()

    def contains(self, commitment: object) -> bool:
        c = canonical_commitment(commitment)
        if c is None:
            return False
        self._refresh()
        return c in self._set

    def add(self, commitment: object) -> bool:
        """Add (and persist) a commitment; returns False if it is not valid hex of 32 bytes."""
        c = canonical_commitment(commitment)
        if c is None:
            return False
        with self._lock:
            self._refresh()
            if c in self._set:
                return True
            if len(self._set) >= self.max_entries:
                log.warning("commitment blacklist full, not adding")
                return False
            self._set.add(c)
            if self.path:
                try:
                    d = os.path.dirname(self.path)
                    if d:
                        os.makedirs(d, exist_ok=True)
                    needs_nl = False
                    if os.path.isfile(self.path) and os.path.getsize(self.path) > 0:
                        with open(self.path, "rb") as f:
                            f.seek(-1, os.SEEK_END)
                            needs_nl = f.read(1) != b"\n"
                    with open(self.path, "ab") as f:
                        f.write((("\n" if needs_nl else "") + c + "\n").encode("ascii"))
                        f.flush()
                        os.fsync(f.fileno())
                    self._mtime = os.stat(self.path).st_mtime
                except OSError as exc:
                    log.warning("cannot persist commitment blacklist %s: %s", self.path, exc)
        return True

    def __len__(self) -> int:
        return len(self._set)
