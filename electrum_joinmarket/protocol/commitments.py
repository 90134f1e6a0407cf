"""Used and external PoDLE commitments, persisted in the wallet's plugin storage.

Equivalent of Ref's ``cmtdata/commitments.json`` (docs/protocol.md §7.4)::

    {"used": [hexC, ...], "external": {"txid:n": {"P": hex, "reveal": {"0": {"P2","s","e"}, ...}}}}

kept under one key of the per-wallet plugin storage (Electrum 4.8 ``BasePlugin.get_storage(wallet)``,
a dict-like ``StoredDict`` whose changes reach the wallet file when the wallet DB is saved), so the
list moves with the wallet file and survives restarts.

Security invariants:

* **Mark before send.** The taker must call ``mark_used(C)`` — and let it persist (``on_change``,
  e.g. ``wallet.save_db``) — *before* ``C`` is handed to the daemon for ``!fill``.  If the process
  dies after sending, the commitment is still recorded, so it is never reused: reusing a commitment
  the makers have blacklisted gets the taker refused everywhere and leaks that it retried with the
  same utxo.  (docs/architecture.md invariant 2: no used commitment forgotten.)
* **Canonical hex.** Every commitment is stored and compared as 64 lower-case hex characters; a
  commitment whose hex case was changed is the same commitment (T5).  Malformed commitments raise
  ``PoDLEParseError`` instead of being silently stored.
* External commitments are checked (every reveal must verify at the index it is filed under)
  before they are stored, so a bad import cannot make the taker send a proof makers reject.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, MutableMapping, Optional, Tuple

from electrum_joinmarket.protocol.podle import (
    MAX_NUMS_INDEX,
    CommitmentCandidate,
    PoDLE,
    PoDLEError,
    PoDLEParseError,
    _parse_point,
    _parse_scalar,
    normalize_commitment,
    parse_utxo_str,
    podle_commitment,
    verify_podle,
)

__all__ = ["STORAGE_KEY", "ExternalCommitment", "CommitmentStore"]

#: Key of this module's sub-dict inside the plugin's per-wallet storage.
STORAGE_KEY = "podle_commitments"

_INDEX_RE = re.compile(r"(0|[1-9][0-9]{0,2})\Z")


def _canonical_utxo(utxo: str) -> str:
    txid, n = parse_utxo_str(utxo)
    return f"{txid}:{n}"


@dataclass(frozen=True)
class ExternalCommitment:
    """Precomputed PoDLE openings for a utxo whose key is not in this wallet.

    ``reveals`` maps NUMS index -> (P2, s, e) as raw bytes.
    """

    utxo: str
    P: bytes
    reveals: Mapping[int, Tuple[bytes, bytes, bytes]]

    def podle(self, index: int) -> PoDLE:
        """The revelation for ``index`` (KeyError if that index was not provided)."""
        P2, s, e = self.reveals[index]
        return PoDLE(utxo=self.utxo, P=self.P, P2=P2, s=s, e=e, index=index)

    def commitment_hex(self, index: int) -> str:
        return self.podle(index).commitment_hex

    def to_json(self) -> Dict[str, Any]:
        """Ref ``commitments.json`` form of this entry (hex strings, string index keys)."""
        return {
            "P": self.P.hex(),
            "reveal": {
                str(i): {"P2": P2.hex(), "s": s.hex(), "e": e.hex()}
                for i, (P2, s, e) in sorted(self.reveals.items())
            },
        }


def _parse_external_entry(utxo: str, entry: Mapping[str, Any]) -> ExternalCommitment:
    """Strictly parse and verify one external entry (Ref file format); raises PoDLEParseError."""
    u = _canonical_utxo(utxo)
    if not isinstance(entry, Mapping) or not isinstance(entry.get("P"), str):
        raise PoDLEParseError("external entry needs 'P'")
    P = _parse_point(entry["P"], "P")
    reveal = entry.get("reveal")
    if not isinstance(reveal, Mapping) or not reveal:
        raise PoDLEParseError("external entry needs a non-empty 'reveal'")
    reveals: Dict[int, Tuple[bytes, bytes, bytes]] = {}
    for k, r in reveal.items():
        ks = str(k)
        if not _INDEX_RE.match(ks) or int(ks) > MAX_NUMS_INDEX:
            raise PoDLEParseError(f"bad reveal index {k!r}")
        i = int(ks)
        if not isinstance(r, Mapping) or not all(isinstance(r.get(f), str) for f in ("P2", "s", "e")):
            raise PoDLEParseError("reveal needs P2, s, e as hex strings")
        P2 = _parse_point(r["P2"], "P2")
        s = _parse_scalar(r["s"], "s")
        e = _parse_scalar(r["e"], "e")
        if not verify_podle(P, P2, s, e, PoDLE(u, P, P2, s, e).commitment, [i]):
            raise PoDLEParseError(f"external reveal for {u} index {i} does not verify")
        reveals[i] = (P2, s, e)
    return ExternalCommitment(utxo=u, P=P, reveals=reveals)


class CommitmentStore:
    """Used and external PoDLE commitments over a dict-like ``storage``.

    ``storage`` is the plugin's per-wallet storage (``BasePlugin.get_storage(wallet)``) or, in
    tests, any ``MutableMapping``.  Data lives under ``storage[STORAGE_KEY]``.  ``on_change`` is
    called after every mutation; in Electrum pass something that writes the wallet DB
    (``wallet.save_db``) so ``mark_used`` is durable before the commitment is sent.
    """

    def __init__(self, storage: MutableMapping[str, Any],
                 on_change: Optional[Callable[[], None]] = None) -> None:
        self._storage = storage
        self._on_change = on_change
        root = storage.setdefault(STORAGE_KEY, {})
        root.setdefault("used", {})
        root.setdefault("external", {})
        self._migrate()

    # -- internals ------------------------------------------------------------------------
    @property
    def _root(self) -> MutableMapping[str, Any]:
        # Always re-read: StoredDict converts assigned dicts into new StoredDict objects.
        return self._storage[STORAGE_KEY]

    @property
    def _used(self) -> MutableMapping[str, Any]:
        return self._root["used"]

    @property
    def _external(self) -> MutableMapping[str, Any]:
        return self._root["external"]

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def _migrate(self) -> None:
        """Canonicalise keys written by older code or by hand; drop entries that are not hex."""
        used = self._used
        bad = [k for k in list(used.keys()) if not (isinstance(k, str) and len(k) == 64 and k == k.lower())]
        changed = False
        for k in bad:
            v = used.pop(k)
            try:
                used[normalize_commitment(k)] = v
            except PoDLEParseError:
                pass
            changed = True
        if changed:
            self._changed()

    # -- used commitments -----------------------------------------------------------------
    def mark_used(self, commitment: Any) -> bool:
        """Record ``commitment`` (bytes or hex, any case) as used; returns True if it was new.

        INVARIANT: call this BEFORE the commitment leaves the process (JMFill / ``!fill``), and
        only proceed if it returned without raising; ``on_change`` is invoked so the record is
        persisted first.  Raises ``PoDLEParseError`` for a malformed commitment.
        """
        c = normalize_commitment(commitment)
        used = self._used
        if c in used:
            return False
        used[c] = int(time.time())
        self._changed()
        return True

    def is_used(self, commitment: Any) -> bool:
        """True if ``commitment`` (bytes or hex, any case) is in the used list.

        Raises ``PoDLEParseError`` for a malformed commitment (callers handling network input
        should treat that as a rejection).
        """
        return normalize_commitment(commitment) in self._used

    def used(self) -> FrozenSet[str]:
        """All used commitments, canonical lower-case hex."""
        return frozenset(self._used.keys())

    def used_indices(self, commitments_by_index: Mapping[int, Any]) -> FrozenSet[int]:
        """Indices whose commitment is already used, for ``CommitmentCandidate.used_indices``."""
        return frozenset(i for i, c in commitments_by_index.items() if self.is_used(c))

    def used_indices_for_key(self, priv32: bytes, retries: int = 3) -> FrozenSet[int]:
        """Used NUMS indices (in ``0..retries-1``) of the commitments a utxo key would produce."""
        if not 1 <= retries <= MAX_NUMS_INDEX + 1:
            raise PoDLEError("retries must be in 1..256")
        return self.used_indices({i: podle_commitment(priv32, i) for i in range(retries)})

    # -- external commitments -------------------------------------------------------------
    def add_external(
        self,
        utxo: str,
        P: bytes,
        reveals: Mapping[int, Tuple[bytes, bytes, bytes]],
    ) -> ExternalCommitment:
        """Add (or replace) precomputed commitments for ``utxo``.

        Every reveal must verify at the index it is filed under; otherwise ``PoDLEParseError``
        and nothing is stored.
        """
        entry = {
            "P": bytes(P).hex() if isinstance(P, (bytes, bytearray)) else P,
            "reveal": {
                str(i): {k: (bytes(v).hex() if isinstance(v, (bytes, bytearray)) else v)
                         for k, v in zip(("P2", "s", "e"), r, strict=True)}
                for i, r in reveals.items()
            },
        }
        ext = _parse_external_entry(utxo, entry)
        self._external[ext.utxo] = ext.to_json()
        self._changed()
        return ext

    def external_for(self, utxo: str) -> Optional[ExternalCommitment]:
        """The external commitments for ``utxo``, or None (also None for a corrupt entry)."""
        try:
            u = _canonical_utxo(utxo)
        except PoDLEParseError:
            return None
        entry = self._external.get(u)
        if entry is None:
            return None
        try:
            return _parse_external_entry(u, entry)
        except PoDLEParseError:
            return None

    def externals(self) -> List[ExternalCommitment]:
        """All valid external entries (corrupt entries are skipped)."""
        out = []
        for u in list(self._external.keys()):
            ext = self.external_for(u)
            if ext is not None:
                out.append(ext)
        return out

    def remove_external(self, utxo: str) -> bool:
        """Remove the external entry for ``utxo``; True if something was removed."""
        u = _canonical_utxo(utxo)
        if u not in self._external:
            return False
        self._external.pop(u)
        self._changed()
        return True

    def external_candidate(self, utxo: str, value: int, confirmations: int) -> Optional[CommitmentCandidate]:
        """Build the ``CommitmentCandidate`` for an external entry, given its chain data."""
        ext = self.external_for(utxo)
        if ext is None:
            return None
        n = 0
        while n in ext.reveals:  # only a contiguous 0..n-1 prefix is usable (Ref semantics)
            n += 1
        return CommitmentCandidate(
            utxo=ext.utxo,
            value=value,
            confirmations=confirmations,
            used_indices=self.used_indices({i: ext.commitment_hex(i) for i in range(n)}),
            external_reveals=n,
        )

    # -- Ref commitments.json interop -----------------------------------------------------
    def import_commitments_json(self, data: Mapping[str, Any]) -> Tuple[int, int]:
        """Merge a Ref ``commitments.json`` object; returns (new used, externals added).

        Validates everything first, then writes (all or nothing).
        """
        if not isinstance(data, Mapping):
            raise PoDLEParseError("commitments data must be an object")
        used_in = data.get("used", [])
        ext_in = data.get("external", {})
        if not isinstance(used_in, (list, tuple)) or not isinstance(ext_in, Mapping):
            raise PoDLEParseError("'used' must be a list and 'external' an object")
        used_norm = [normalize_commitment(c) for c in used_in]
        exts = [_parse_external_entry(u, e) for u, e in ext_in.items()]
        n_used = 0
        used = self._used
        now = int(time.time())
        for c in used_norm:
            if c not in used:
                used[c] = now
                n_used += 1
        for ext in exts:
            self._external[ext.utxo] = ext.to_json()
        self._changed()
        return n_used, len(exts)

    def export_commitments_json(self) -> Dict[str, Any]:
        """This store in Ref ``commitments.json`` form."""
        return {
            "used": sorted(self._used.keys()),
            "external": {e.utxo: e.to_json() for e in self.externals()},
        }
