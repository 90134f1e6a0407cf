"""PoDLE (proof of discrete-log equivalence) commitments, as used by JoinMarket's anti-snooping
defence.  Wire reference: docs/protocol.md §7 (vectors ``nums_points.json`` and ``podle.json``).

Math (§7.1): the taker holds the utxo key ``x`` with ``P = xG``.  For a NUMS point ``J = J(i)``
it reveals ``P2 = xJ`` and a Schnorr-style proof ``(s, e)`` that ``log_G(P) == log_J(P2)``::

    KG = kG, KJ = kJ, e = sha256(KG || KJ || P || P2), s = k + x*e mod n

and commits (in ``!fill``) to ``C = sha256(P2)``.  Each index ``i`` gives a different ``C`` for
the same utxo, which is how a taker gets ``taker_utxo_retries`` tries per utxo.

Security invariants:

* ``verify_podle`` (the maker's check) accepts only if ALL hold: ``sha256(P2)`` equals the
  commitment the taker sent in ``!fill`` (hex case-insensitive, T7); ``P`` and ``P2`` are valid
  compressed points; ``0 < s < n`` and ``0 < e < n``; and for some index in the allowed range
  (default 0..2 = ``range(taker_utxo_retries)``, T6; indices outside 0..255 are refused)
  ``sha256((sG - eP) || (sJ(i) - eP2) || P || P2) == e``.  Accepting any larger index would let a
  taker make unlimited fresh commitments from one utxo, defeating the blacklist.
* Wire parsers (``parse_revelation``, ``parse_fill_commitment``, ``parse_utxo_str``,
  ``normalize_commitment``) are strict and raise only ``PoDLEParseError`` subclasses on hostile
  input (exact field counts and lengths, hex only, bounded sizes).
* The taker marks a commitment used *before* sending it (see ``commitments.CommitmentStore``); the
  choice rules (§7.4) are the pure function ``choose_commitment_utxo``.
* Private keys and nonces are never logged or included in ``repr`` of results.
"""

from __future__ import annotations

import functools
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import FrozenSet, Iterable, Optional, Sequence, Tuple, Union

import electrum_ecc as ecc
from electrum.crypto import hash_160, sha256

from electrum_joinmarket.errors import JoinMarketError
from jmcore.constants import COMMITMENT_TYPE_PODLE, TAKER_UTXO_AGE, TAKER_UTXO_AMTPERCENT, TAKER_UTXO_RETRIES

__all__ = [
    "PoDLEError",
    "PoDLEParseError",
    "UnsupportedCommitmentType",
    "DEFAULT_INDEX_RANGE",
    "MAX_NUMS_INDEX",
    "COMMITMENT_TYPE_PODLE",
    "nums_point",
    "nums_point_search",
    "PoDLE",
    "generate_podle",
    "podle_commitment",
    "verify_podle",
    "find_podle_index",
    "parse_revelation",
    "parse_utxo_str",
    "parse_fill_commitment",
    "normalize_commitment",
    "pubkey_matches_script",
    "CommitmentPolicy",
    "CommitmentCandidate",
    "CommitmentChoice",
    "NoCommitmentAvailable",
    "next_commitment_index",
    "choose_commitment_utxo",
]

CURVE_ORDER = ecc.CURVE_ORDER
G_COMPRESSED = ecc.GENERATOR.get_public_key_bytes(compressed=True)
G_UNCOMPRESSED = ecc.GENERATOR.get_public_key_bytes(compressed=False)

#: Indices a maker accepts by default: range(taker_utxo_retries) with retries = 3.
DEFAULT_INDEX_RANGE = range(TAKER_UTXO_RETRIES)
#: NUMS points exist for indices 0..255 (the index is one byte of the seed).
MAX_NUMS_INDEX = 255
# COMMITMENT_TYPE_PODLE (jmcore.constants): the only commitment type, the first character of
# the ``!fill`` commitment field.

# Upper bound for a revelation string: 64+1+10 (utxo) + 66 + 66 + 64 + 64 + 4 separators = 339.
MAX_REVELATION_LEN = 400

_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}\Z")
_POINT_HEX_RE = re.compile(r"0[23][0-9a-fA-F]{64}\Z")
_UTXO_RE = re.compile(r"([0-9a-fA-F]{64}):(0|[1-9][0-9]{0,9})\Z")


class PoDLEError(JoinMarketError, ValueError):
    """Generic PoDLE failure (bad local arguments, unusable key/nonce)."""


class PoDLEParseError(PoDLEError):
    """A PoDLE-related field from the network is malformed."""


class UnsupportedCommitmentType(PoDLEParseError):
    """The ``!fill`` commitment has a type character other than ``P``.

    ``commitment_type`` holds that character so a maker can answer
    ``!error Unsupported commitment type: X`` like Ref does.
    """

    def __init__(self, commitment_type: str) -> None:
        super().__init__(f"Unsupported commitment type: {commitment_type}")
        self.commitment_type = commitment_type


# --------------------------------------------------------------------------------------------
# NUMS points (§7.2)

def nums_point_search(index: int) -> Tuple[bytes, str, int]:
    """Run the NUMS generation procedure for ``index``; returns (point33, seed_name, counter).

    For seed ``G`` in [compressed G, uncompressed G] and ``counter`` in 0..255, the first
    ``0x02 || sha256(G || byte(index) || byte(counter))`` that parses as a curve point is ``J(index)``.
    Nobody knows ``log_G(J)``, which is what makes ``P2 = xJ`` a binding commitment to ``x``.
    """
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= MAX_NUMS_INDEX:
        raise PoDLEError(f"NUMS index out of range: {index!r}")
    for seed_name, g in (("compressed", G_COMPRESSED), ("uncompressed", G_UNCOMPRESSED)):
        for counter in range(256):
            claimed = b"\x02" + sha256(g + bytes([index, counter]))
            if ecc.ECPubkey.is_pubkey_bytes(claimed):
                return claimed, seed_name, counter
    raise PoDLEError("no NUMS point found")  # pragma: no cover - never happens for 0..255


@functools.lru_cache(maxsize=256)
def _nums_point_cached(index: int) -> ecc.ECPubkey:
    return ecc.ECPubkey(nums_point_search(index)[0])


def nums_point(index: int) -> ecc.ECPubkey:
    """The NUMS alternative generator ``J(index)`` for ``0 <= index <= 255`` (cached)."""
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= MAX_NUMS_INDEX:
        raise PoDLEError(f"NUMS index out of range: {index!r}")
    return _nums_point_cached(index)


# --------------------------------------------------------------------------------------------
# wire parsing helpers

def parse_utxo_str(utxo: str) -> Tuple[str, int]:
    """Strictly parse ``txid_hex:n`` (display byte order); returns (lower-case txid, n).

    ``n`` must be a canonical decimal (no sign, no leading zeros) below 2**32.  The NG extended
    form ``txid:n:spk:height`` (only after mutual ``neutrino_compat``) is not accepted here.
    """
    if not isinstance(utxo, str) or len(utxo) > 64 + 1 + 10:
        raise PoDLEParseError("utxo must be 'txid:n'")
    m = _UTXO_RE.match(utxo)
    if not m:
        raise PoDLEParseError("utxo must be 'txid:n' with a 64-hex txid")
    n = int(m.group(2))
    if n > 0xFFFFFFFF:
        raise PoDLEParseError("utxo output index out of range")
    return m.group(1).lower(), n


def _canonical_utxo(utxo: str) -> str:
    txid, n = parse_utxo_str(utxo)
    return f"{txid}:{n}"


def normalize_commitment(commitment: Union[str, bytes]) -> str:
    """Canonical form of a commitment ``C``: 64 lower-case hex characters.

    Accepts 32 bytes or 64 hex characters in any case.  Hex case must never make two strings
    count as different commitments (before Ref 0.9.12 it did, allowing endless reuse — T5).
    """
    if isinstance(commitment, (bytes, bytearray)):
        if len(commitment) != 32:
            raise PoDLEParseError("commitment must be 32 bytes")
        return bytes(commitment).hex()
    if not isinstance(commitment, str) or not _HEX64_RE.match(commitment):
        raise PoDLEParseError("commitment must be 64 hex characters")
    return commitment.lower()


def parse_fill_commitment(field_: str) -> bytes:
    """Parse the ``!fill`` commitment field ``"P" + hex(C)``; returns the 32 raw bytes of C.

    Raises ``UnsupportedCommitmentType`` if the first character is not ``P`` and
    ``PoDLEParseError`` for anything else malformed (hex case is accepted and canonicalised).
    """
    if not isinstance(field_, str) or not field_:
        raise PoDLEParseError("empty commitment field")
    if len(field_) > 65:
        raise PoDLEParseError("commitment field too long")
    ctype = field_[0]
    if ctype != COMMITMENT_TYPE_PODLE:
        # Report only a printable single character back, never arbitrary bytes.
        raise UnsupportedCommitmentType(ctype if ctype.isprintable() else "?")
    return bytes.fromhex(normalize_commitment(field_[1:]))


def _parse_point(hexstr: str, name: str) -> bytes:
    if not _POINT_HEX_RE.match(hexstr):
        raise PoDLEParseError(f"{name} must be a 33-byte compressed point in hex")
    raw = bytes.fromhex(hexstr)
    if not ecc.ECPubkey.is_pubkey_bytes(raw):
        raise PoDLEParseError(f"{name} is not a valid curve point")
    return raw


def _parse_scalar(hexstr: str, name: str) -> bytes:
    if not _HEX64_RE.match(hexstr):
        raise PoDLEParseError(f"{name} must be 32 bytes in hex")
    raw = bytes.fromhex(hexstr)
    v = int.from_bytes(raw, "big")
    if not 0 < v < CURVE_ORDER:
        raise PoDLEParseError(f"{name} out of range (must be 0 < {name} < n)")
    return raw


# --------------------------------------------------------------------------------------------
# the proof object

@dataclass(frozen=True)
class PoDLE:
    """An opened PoDLE commitment: the ``!auth`` revelation ``utxo|P|P2|s|e``.

    ``index`` is the NUMS index used, known to the generator (None for a parsed revelation — the
    verifier finds it).  Holds no secret material.
    """

    utxo: str
    P: bytes
    P2: bytes
    s: bytes
    e: bytes
    index: Optional[int] = field(default=None, compare=False)

    @property
    def commitment(self) -> bytes:
        """``C = sha256(P2)`` (32 bytes)."""
        return sha256(self.P2)

    @property
    def commitment_hex(self) -> str:
        """``C`` as 64 lower-case hex characters (the ``!hp2`` body and the blacklist form)."""
        return self.commitment.hex()

    def fill_commitment(self) -> str:
        """The ``!fill`` commitment field: ``"P" + hex(C)``."""
        return COMMITMENT_TYPE_PODLE + self.commitment_hex

    def serialize_revelation(self) -> str:
        """The ``!auth`` plaintext: ``txid:n|P|P2|s|e`` (lower-case hex)."""
        return "|".join([self.utxo, self.P.hex(), self.P2.hex(), self.s.hex(), self.e.hex()])

    def verify(self, commitment: Union[str, bytes], index_range: Iterable[int] = DEFAULT_INDEX_RANGE) -> bool:
        """``verify_podle`` on this revelation."""
        return verify_podle(self.P, self.P2, self.s, self.e, commitment, index_range)


def parse_revelation(text: str) -> PoDLE:
    """Strictly parse an ``!auth`` revelation ``txid:n|P|P2|s|e``.

    Exactly five ``|``-separated fields; utxo as in ``parse_utxo_str``; P and P2 valid compressed
    points; s and e 32-byte scalars with ``0 < v < n``.  Does NOT verify the proof (that needs the
    commitment from ``!fill``: use ``verify_podle``).  Raises ``PoDLEParseError``.
    """
    if not isinstance(text, str):
        raise PoDLEParseError("revelation must be str")
    if len(text) > MAX_REVELATION_LEN:
        raise PoDLEParseError("revelation too long")
    parts = text.split("|")
    if len(parts) != 5:
        raise PoDLEParseError("revelation must have exactly 5 '|'-separated fields")
    utxo, P, P2, s, e = parts
    return PoDLE(
        utxo=_canonical_utxo(utxo),
        P=_parse_point(P, "P"),
        P2=_parse_point(P2, "P2"),
        s=_parse_scalar(s, "s"),
        e=_parse_scalar(e, "e"),
    )


# --------------------------------------------------------------------------------------------
# generation (taker)

def _privkey(priv32: bytes) -> ecc.ECPrivkey:
    if not isinstance(priv32, (bytes, bytearray)):
        raise TypeError("private key must be bytes")
    priv32 = bytes(priv32)
    if len(priv32) == 33 and priv32[-1] == 0x01:  # WIF-style compressed flag
        priv32 = priv32[:32]
    if len(priv32) != 32:
        raise PoDLEError("private key must be 32 bytes")
    try:
        return ecc.ECPrivkey(priv32)
    except ecc.InvalidECPointException as e:
        raise PoDLEError("private key out of range") from e


def podle_commitment(priv32: bytes, index: int) -> bytes:
    """The commitment ``sha256(x * J(index))`` a key would use at ``index`` (no proof).

    Cheap; the taker uses it to find which indices of a utxo are already in its used list.
    """
    x = _privkey(priv32)
    return sha256((nums_point(index) * x.secret_scalar).get_public_key_bytes(compressed=True))


def generate_podle(priv32: bytes, utxo_str: str, index: int, k: Optional[bytes] = None) -> PoDLE:
    """Create the PoDLE for the utxo key ``priv32`` at NUMS ``index`` (§7.1).

    ``k`` is the 32-byte nonce; leave it None in production (a fresh CSPRNG nonce is drawn: a
    reused or predictable ``k`` reveals the utxo private key, since ``x = (s - k)/e``).  Fixed
    ``k`` exists only for test vectors.  In the (~2^-128) event that e or s falls outside
    ``1..n-1`` a random nonce is redrawn; a fixed nonce then raises ``PoDLEError``.
    """
    x = _privkey(priv32)
    utxo = _canonical_utxo(utxo_str)
    J = nums_point(index)
    P = x.get_public_key_bytes(compressed=True)
    P2 = (J * x.secret_scalar).get_public_key_bytes(compressed=True)
    while True:
        if k is None:
            kk = secrets.randbelow(CURVE_ORDER - 1) + 1
        else:
            if not isinstance(k, (bytes, bytearray)) or len(k) != 32:
                raise PoDLEError("nonce k must be 32 bytes")
            kk = int.from_bytes(k, "big")
            if not 0 < kk < CURVE_ORDER:
                raise PoDLEError("nonce k out of range")
        KG = (ecc.GENERATOR * kk).get_public_key_bytes(compressed=True)
        KJ = (J * kk).get_public_key_bytes(compressed=True)
        e = sha256(KG + KJ + P + P2)
        e_int = int.from_bytes(e, "big")
        s_int = (kk + x.secret_scalar * e_int) % CURVE_ORDER
        if 0 < e_int < CURVE_ORDER and s_int != 0:
            break
        if k is not None:
            raise PoDLEError("nonce produced an out-of-range proof; use another nonce")
    return PoDLE(utxo=utxo, P=P, P2=P2, s=s_int.to_bytes(32, "big"), e=e, index=index)


# --------------------------------------------------------------------------------------------
# verification (maker)

def _check_index_range(index_range: Iterable[int]) -> Sequence[int]:
    idx = list(index_range)
    for i in idx:
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i <= MAX_NUMS_INDEX:
            raise PoDLEError(f"index range must lie within 0..{MAX_NUMS_INDEX}")
    return idx


def find_podle_index(
    P: bytes,
    P2: bytes,
    s: bytes,
    e: bytes,
    commitment: Union[str, bytes],
    index_range: Iterable[int] = DEFAULT_INDEX_RANGE,
) -> Optional[int]:
    """Return the NUMS index for which the proof verifies, or None if it does not verify.

    See the module docstring for the exact checks.  Malformed ``P/P2/s/e`` (wrong type, length,
    invalid point, scalar out of range) or a malformed commitment yield None — they come from the
    network.  A malformed ``index_range`` is a local programming error and raises ``PoDLEError``.
    """
    indices = _check_index_range(index_range)
    try:
        c_expected = normalize_commitment(commitment)
    except PoDLEParseError:
        return None
    if not all(isinstance(v, (bytes, bytearray)) for v in (P, P2, s, e)):
        return None
    P, P2, s, e = bytes(P), bytes(P2), bytes(s), bytes(e)
    if len(P) != 33 or len(P2) != 33 or len(s) != 32 or len(e) != 32:
        return None
    if P[0] not in (2, 3) or P2[0] not in (2, 3):
        return None
    # check 1: the revealed P2 opens the commitment sent in !fill (T7)
    if not hmac.compare_digest(sha256(P2).hex(), c_expected):
        return None
    s_int = int.from_bytes(s, "big")
    e_int = int.from_bytes(e, "big")
    if not (0 < s_int < CURVE_ORDER and 0 < e_int < CURVE_ORDER):
        return None
    try:
        P_pt = ecc.ECPubkey(P)
        P2_pt = ecc.ECPubkey(P2)
    except ecc.InvalidECPointException:
        return None
    minus_e = (-e_int) % CURVE_ORDER
    KG = ecc.GENERATOR * s_int + P_pt * minus_e
    if KG.is_at_infinity():
        return None
    KG_ser = KG.get_public_key_bytes(compressed=True)
    minus_e_P2 = P2_pt * minus_e
    # check 2: e == H(sG - eP || sJ - eP2 || P || P2) for an allowed index (T6)
    for i in indices:
        KJ = nums_point(i) * s_int + minus_e_P2
        if KJ.is_at_infinity():
            continue
        e_check = sha256(KG_ser + KJ.get_public_key_bytes(compressed=True) + P + P2)
        if hmac.compare_digest(e_check, e):
            return i
    return None


def verify_podle(
    P: bytes,
    P2: bytes,
    s: bytes,
    e: bytes,
    commitment: Union[str, bytes],
    index_range: Iterable[int] = DEFAULT_INDEX_RANGE,
) -> bool:
    """The maker's PoDLE check: True iff the proof opens ``commitment`` for an allowed index.

    Default ``index_range`` is 0..2 (``taker_utxo_retries = 3``); a proof made with index 3 or
    higher is rejected (T6).  ``commitment`` is the C from ``!fill`` (bytes or hex, any case);
    a P2 whose hash is not C is rejected (T7).  Never raises for network data.
    """
    return find_podle_index(P, P2, s, e, commitment, index_range) is not None


def pubkey_script(P: bytes, script_type: str) -> bytes:
    """The scriptPubKey paying the compressed key ``P`` as ``script_type`` (``p2wpkh``,
    ``p2sh-p2wpkh`` or ``p2pkh``, as :attr:`jmcore.offers.Offer.script_type` names them)."""
    h = hash_160(bytes(P))
    if script_type == "p2wpkh":
        return b"\x00\x14" + h
    if script_type == "p2sh-p2wpkh":
        return b"\xa9\x14" + hash_160(b"\x00\x14" + h) + b"\x87"
    if script_type == "p2pkh":
        return b"\x76\xa9\x14" + h + b"\x88\xac"
    raise ValueError(f"unknown script type {script_type!r}")


def pubkey_matches_script(P: bytes, script_pubkey: bytes) -> bool:
    """True iff ``script_pubkey`` pays to the compressed key ``P`` as p2wpkh, p2sh-p2wpkh or p2pkh.

    The maker uses this to check that the PoDLE key ``P`` owns the revealed utxo (§7.5).
    """
    if (not isinstance(P, (bytes, bytearray)) or len(P) != 33
            or not isinstance(script_pubkey, (bytes, bytearray))):
        return False
    h = hash_160(bytes(P))
    spk = bytes(script_pubkey)
    p2wpkh = b"\x00\x14" + h
    if spk == p2wpkh:
        return True
    if spk == b"\xa9\x14" + hash_160(p2wpkh) + b"\x87":
        return True
    return spk == b"\x76\xa9\x14" + h + b"\x88\xac"


# --------------------------------------------------------------------------------------------
# taker utxo choice (§7.4)

@dataclass(frozen=True)
class CommitmentPolicy:
    """The Ref POLICY settings that govern PoDLE commitments (defaults = Ref defaults)."""

    taker_utxo_age: int = TAKER_UTXO_AGE
    taker_utxo_amtpercent: int = TAKER_UTXO_AMTPERCENT
    taker_utxo_retries: int = TAKER_UTXO_RETRIES

    def __post_init__(self) -> None:
        for name in ("taker_utxo_age", "taker_utxo_amtpercent", "taker_utxo_retries"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be a non-negative int")
        if not 1 <= self.taker_utxo_retries <= MAX_NUMS_INDEX + 1:
            raise ValueError("taker_utxo_retries must be in 1..256")

    def min_value(self, cj_amount: int) -> int:
        """Smallest utxo value allowed for a commitment.

        Ref's exact expression ``int(cj_amount * pct / 100.0)`` (float), so taker and makers agree
        on the boundary; it equals the exact integer floor whenever ``cj_amount * pct < 2**53``.
        """
        return int(cj_amount * self.taker_utxo_amtpercent / 100.0)


@dataclass(frozen=True)
class CommitmentCandidate:
    """A utxo the taker could commit to.

    ``used_indices``: NUMS indices whose commitment for this utxo is already in the used list.
    ``external_reveals``: for an entry from the external commitments store, the number of
    precomputed reveals (indices ``0..n-1``); None for the wallet's own utxos.
    ``standard``: a standard wallet script (never a fidelity-bond timelock).
    """

    utxo: str
    value: int
    confirmations: int
    used_indices: FrozenSet[int] = frozenset()
    unspent: bool = True
    standard: bool = True
    external_reveals: Optional[int] = None


@dataclass(frozen=True)
class CommitmentChoice:
    """Commit to ``utxo`` at NUMS ``index``; ``source`` is ``"tx"``, ``"wallet"`` or ``"external"``."""

    utxo: str
    index: int
    source: str

    @property
    def external(self) -> bool:
        return self.source == "external"


@dataclass(frozen=True)
class NoCommitmentAvailable:
    """No utxo qualifies.  ``reason`` is a user-facing explanation.

    ``retry_later`` is True when some otherwise usable utxos are merely too young (they will
    qualify after more confirmations).  ``exhausted_externals`` lists external entries whose
    reveals are all used (Ref deletes those from its file).
    """

    reason: str
    too_young: Tuple[str, ...] = ()
    too_small: Tuple[str, ...] = ()
    exhausted: Tuple[str, ...] = ()
    exhausted_externals: Tuple[str, ...] = ()
    retry_later: bool = False


def next_commitment_index(used_indices: Iterable[int], retries: int) -> int:
    """Ref's rule: 1 + the highest index in ``0..retries-1`` already used (0 if none).

    A result ``>= retries`` means the utxo is exhausted.  Used indices ``>= retries`` are ignored,
    and a gap below the highest used index is never refilled (matches Ref ``get_podle_tries``).
    """
    used = [i for i in used_indices if isinstance(i, int) and 0 <= i < retries]
    return max(used) + 1 if used else 0


def choose_commitment_utxo(
    tx_utxos: Sequence[CommitmentCandidate],
    cj_amount: int,
    policy: CommitmentPolicy = CommitmentPolicy(),
    *,
    wallet_utxos: Sequence[CommitmentCandidate] = (),
    external: Sequence[CommitmentCandidate] = (),
) -> Union[CommitmentChoice, NoCommitmentAvailable]:
    """Choose which utxo and NUMS index the taker commits to (§7.4, Ref ``make_commitment``).

    1. First pass over this coinjoin's own inputs ``tx_utxos`` (preferred: they are about to be
       spent anyway, so revealing them costs no privacy later).
    2. Otherwise a second pass over all wallet utxos ``wallet_utxos``, then over ``external``
       precomputed commitments.
    A candidate qualifies if it is unspent, a standard script, has ``confirmations >= age`` and
    ``value >= int(cj_amount * amtpercent / 100)``; its index is ``next_commitment_index``, and
    it is skipped if that index reaches ``taker_utxo_retries`` (or, for externals, the number of
    reveals available).  Candidates are tried in the given order.  For sweeps pass the solved
    sweep amount as ``cj_amount``.

    Returns ``CommitmentChoice`` or ``NoCommitmentAvailable`` (never raises for bad candidates;
    a candidate with a malformed utxo string is treated as unusable).
    """
    if not isinstance(cj_amount, int) or isinstance(cj_amount, bool) or cj_amount < 0:
        raise ValueError("cj_amount must be a non-negative int (sats)")
    min_value = policy.min_value(cj_amount)
    retries = policy.taker_utxo_retries
    too_young, too_small, exhausted, exhausted_ext = [], [], [], []

    def scan(cands: Sequence[CommitmentCandidate], source: str) -> Optional[CommitmentChoice]:
        for c in cands:
            try:
                utxo = _canonical_utxo(c.utxo)
            except PoDLEParseError:
                continue
            if not c.unspent or not c.standard:
                continue
            young = c.confirmations < policy.taker_utxo_age
            small = c.value < min_value
            if young and utxo not in too_young:
                too_young.append(utxo)
            if small and utxo not in too_small:
                too_small.append(utxo)
            if young or small:
                continue
            limit = retries
            if source == "external":
                limit = min(retries, max(0, int(c.external_reveals or 0)))
            used = [i for i in c.used_indices if isinstance(i, int) and 0 <= i < limit]
            index = max(used) + 1 if used else 0
            if index >= limit:
                if source == "external":
                    if utxo not in exhausted_ext:
                        exhausted_ext.append(utxo)
                elif utxo not in exhausted:
                    exhausted.append(utxo)
                continue
            return CommitmentChoice(utxo=utxo, index=index, source=source)
        return None

    choice = scan(tx_utxos, "tx") or scan(wallet_utxos, "wallet") or scan(external, "external")
    if choice is not None:
        return choice
    # Only utxos that are young but otherwise fine will help by waiting.
    retry_later = any(u not in too_small for u in too_young)
    parts = [f"no utxo qualifies for a PoDLE commitment (need >= {policy.taker_utxo_age} "
             f"confirmations and >= {min_value} sats, at most {retries} uses per utxo)"]
    if too_young:
        parts.append(f"{len(too_young)} too young")
    if too_small:
        parts.append(f"{len(too_small)} too small")
    if exhausted or exhausted_ext:
        parts.append(f"{len(exhausted) + len(exhausted_ext)} already used {retries} times")
    if retry_later:
        parts.append("retry after more confirmations")
    return NoCommitmentAvailable(
        reason="; ".join(parts),
        too_young=tuple(too_young),
        too_small=tuple(too_small),
        exhausted=tuple(exhausted),
        exhausted_externals=tuple(exhausted_ext),
        retry_later=retry_later,
    )
