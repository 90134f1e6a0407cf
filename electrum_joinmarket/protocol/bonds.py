"""Fidelity bonds: the ``!tbond`` proof and the bond value (docs/protocol.md §11, ``fidelity_bond.json``).

Proof = base64 of exactly 252 bytes, little-endian struct ``<72s72s33sH33s32sII``::

    nick_sig(72, DER left-padded with 0xff) | cert_sig(72, same) | cert_pub(33) | cert_expiry(u16)
    | utxo_pub(33) | txid(32, display order) | vout(u32) | locktime(u32)

* ``nick_sig``: Bitcoin-message ECDSA by the *certificate* key over ``taker_nick + "|" + maker_nick``
  — fresh per taker, so a proof cannot be replayed to another taker or by another maker.
* ``cert_sig``: Bitcoin-message ECDSA by the *bond utxo* key over
  ``b"fidelity-bond-cert|" + cert_pub(33 raw bytes) + b"|" + ascii(cert_expiry)``; the variant
  with ``hex(cert_pub)`` is also accepted (Ref does).  It delegates the cold bond key to a hot key
  until block ``cert_expiry * 2016``.

Security invariants (what ``parse_and_verify_bond_proof`` + ``check_bond_utxo`` check, and why):

* strict base64, exact length 252, padding bytes before the DER header must be ``0xff`` and the
  DER must fill the rest of its slot exactly; both pubkeys valid compressed points;
* the nick signature verifies under ``cert_pub`` for exactly (taker_nick, maker_nick): binds the
  proof to this conversation;
* the certificate signature verifies under ``utxo_pub``: binds the hot key to the bond key;
* (chain data supplied by the caller) the utxo is unspent and confirmed, its scriptPubKey is
  P2WSH(``<locktime> OP_CHECKLOCKTIMEVERIFY OP_DROP <utxo_pub> OP_CHECKSIG``) — so the coins really
  are locked by the key that signed the certificate — and the certificate has not expired
  (``height <= cert_expiry * 2016``).
* Any failure raises ``BondProofError`` (a ``ValueError``) with a specific message; never anything
  else for network data.  No private key is ever logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import re
import struct
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

import electrum_ecc as ecc
from electrum.bitcoin import construct_script, opcodes, usermessage_magic
from electrum.crypto import sha256, sha256d

from electrum_joinmarket.errors import JoinMarketError
from electrum_joinmarket.logs import get_logger
from jmcore.constants import (
    BOND_INTEREST_RATE,
    BOND_VALUE_EXPONENT,
    FIDELITY_BOND_PROOF_B64_LENGTH,
    FIDELITY_BOND_PROOF_LENGTH,
    SECONDS_PER_YEAR,
)

_log = get_logger(__name__)

__all__ = [
    "BondProofError",
    "bond_values",
    "PROOF_LEN",
    "PROOF_B64_LEN",
    "RETARGET_INTERVAL",
    "YEAR_SECONDS",
    "DEFAULT_INTEREST_RATE",
    "DEFAULT_BOND_VALUE_EXPONENT",
    "FidelityBondProof",
    "parse_bond_proof",
    "parse_and_verify_bond_proof",
    "create_bond_proof",
    "sign_bond_certificate",
    "cert_message",
    "cert_message_hex_variant",
    "nick_message",
    "bond_redeem_script",
    "bond_script_pubkey",
    "check_bond_utxo",
    "calculate_timelocked_fidelity_bond_value",
]

PROOF_STRUCT = struct.Struct("<72s72s33sH33s32sII")
PROOF_LEN = FIDELITY_BOND_PROOF_LENGTH
assert PROOF_STRUCT.size == PROOF_LEN
PROOF_B64_LEN = FIDELITY_BOND_PROOF_B64_LENGTH
RETARGET_INTERVAL = 2016
#: Ref: 60 * 60 * 24 * 365.2425 (a float, Gregorian year) = 31 556 952 s.
YEAR_SECONDS = float(SECONDS_PER_YEAR)
DEFAULT_INTEREST_RATE = BOND_INTEREST_RATE
DEFAULT_BOND_VALUE_EXPONENT = BOND_VALUE_EXPONENT

_B64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}\Z")


class BondProofError(JoinMarketError, ValueError):
    """A fidelity bond proof (or its utxo) is malformed or does not verify."""


def nick_message(taker_nick: str, maker_nick: str) -> bytes:
    """The string signed by the certificate key: ``taker_nick|maker_nick`` (ASCII)."""
    try:
        return (taker_nick + "|" + maker_nick).encode("ascii")
    except (UnicodeError, TypeError) as e:
        raise BondProofError("nicks must be ASCII strings") from e


def cert_message(cert_pub: bytes, cert_expiry: int) -> bytes:
    """The certificate message with the raw 33-byte cert pubkey (what Ref makers sign)."""
    return b"fidelity-bond-cert|" + bytes(cert_pub) + b"|" + str(int(cert_expiry)).encode("ascii")


def cert_message_hex_variant(cert_pub: bytes, cert_expiry: int) -> bytes:
    """The certificate message with the hex cert pubkey (also accepted by Ref verifiers)."""
    return (b"fidelity-bond-cert|" + bytes(cert_pub).hex().encode("ascii") + b"|"
            + str(int(cert_expiry)).encode("ascii"))


def _msg_hash_bytes(msg: bytes) -> bytes:
    """sha256d of the Bitcoin-message framing of raw bytes (Ref ``BitcoinMessage(msg).GetHash()``)."""
    return sha256d(usermessage_magic(msg))


def _sign_der(priv: ecc.ECPrivkey, msg: bytes) -> bytes:
    return priv.ecdsa_sign(_msg_hash_bytes(msg), sigencode=ecc.ecdsa_der_sig_from_r_and_s,
                           grind_r_value=False)


def _verify_der(pub: ecc.ECPubkey, der: bytes, msg: bytes) -> bool:
    try:
        sig64 = ecc.ecdsa_sig64_from_der_sig(der)
    except Exception:  # electrum_ecc raises a bare Exception for bad DER
        return False
    return pub.ecdsa_verify(sig64, _msg_hash_bytes(msg))


def _privkey(secret: bytes) -> ecc.ECPrivkey:
    secret = bytes(secret)
    if len(secret) == 33 and secret[-1] == 0x01:
        secret = secret[:32]
    if len(secret) != 32:
        raise ValueError("private key must be 32 bytes")
    return ecc.ECPrivkey(secret)


def _unpad_der(slot: bytes, name: str) -> bytes:
    """Strip the 0xff left padding of a 72-byte signature slot.

    Ref strips up to the first 0x30; we additionally require that everything before it is 0xff and
    that the DER length byte accounts exactly for the rest of the slot (no trailing junk).
    """
    try:
        start = slot.index(0x30)
    except ValueError:
        raise BondProofError(f"{name}: DER signature header not found") from None
    if any(b != 0xFF for b in slot[:start]):
        raise BondProofError(f"{name}: bad signature padding")
    der = slot[start:]
    if len(der) < 8 or der[1] != len(der) - 2:
        raise BondProofError(f"{name}: bad DER signature length")
    return der


@dataclass(frozen=True)
class FidelityBondProof:
    """A decoded ``!tbond`` proof.  ``txid`` is lower-case hex in display order."""

    nick_sig: bytes
    cert_sig: bytes
    cert_pub: bytes
    cert_expiry: int
    utxo_pub: bytes
    txid: str
    vout: int
    locktime: int

    @property
    def utxo(self) -> str:
        """``txid:vout``."""
        return f"{self.txid}:{self.vout}"

    @property
    def cert_valid_until_height(self) -> int:
        """Last block height at which the certificate is valid (``cert_expiry * 2016``)."""
        return self.cert_expiry * RETARGET_INTERVAL

    def serialize(self) -> str:
        """Base64 of the 252-byte struct (signatures 0xff-left-padded to 72 bytes)."""
        if len(self.nick_sig) > 72 or len(self.cert_sig) > 72:
            raise BondProofError("signature too long")
        raw = PROOF_STRUCT.pack(
            self.nick_sig.rjust(72, b"\xff"),
            self.cert_sig.rjust(72, b"\xff"),
            self.cert_pub,
            self.cert_expiry,
            self.utxo_pub,
            bytes.fromhex(self.txid),
            self.vout,
            self.locktime,
        )
        return base64.b64encode(raw).decode("ascii")

    def verify_signatures(self, taker_nick: str, maker_nick: str) -> None:
        """Check the nick signature (cert key) and the certificate signature (utxo key).

        Raises ``BondProofError`` naming the signature that failed.
        """
        try:
            cert_pub = ecc.ECPubkey(self.cert_pub)
            utxo_pub = ecc.ECPubkey(self.utxo_pub)
        except ecc.InvalidECPointException as e:
            raise BondProofError("invalid public key in proof") from e
        if not _verify_der(cert_pub, self.nick_sig, nick_message(taker_nick, maker_nick)):
            raise BondProofError("nick sig does not verify")
        hex_variant = cert_message_hex_variant(self.cert_pub, self.cert_expiry)
        if not (_verify_der(utxo_pub, self.cert_sig, cert_message(self.cert_pub, self.cert_expiry))
                or _verify_der(utxo_pub, self.cert_sig, hex_variant)):
            raise BondProofError("cert sig does not verify")


def parse_bond_proof(proof_b64: str) -> FidelityBondProof:
    """Strictly decode a ``!tbond`` proof WITHOUT checking signatures; raises ``BondProofError``."""
    if not isinstance(proof_b64, str):
        raise BondProofError("proof must be str")
    if len(proof_b64) != PROOF_B64_LEN or not _B64_RE.match(proof_b64):
        raise BondProofError("proof must be 336 base64 characters")
    try:
        raw = base64.b64decode(proof_b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BondProofError("proof is not valid base64") from e
    if len(raw) != PROOF_LEN:
        raise BondProofError("invalid proof length")
    nick_slot, cert_slot, cert_pub, cert_expiry, utxo_pub, txid, vout, locktime = PROOF_STRUCT.unpack(raw)
    for name, pk in (("cert_pub", cert_pub), ("utxo_pub", utxo_pub)):
        if pk[0] not in (2, 3) or not ecc.ECPubkey.is_pubkey_bytes(pk):
            raise BondProofError(f"{name} is not a valid compressed public key")
    return FidelityBondProof(
        nick_sig=_unpad_der(nick_slot, "nick_sig"),
        cert_sig=_unpad_der(cert_slot, "cert_sig"),
        cert_pub=cert_pub,
        cert_expiry=cert_expiry,
        utxo_pub=utxo_pub,
        txid=txid.hex(),
        vout=vout,
        locktime=locktime,
    )


def parse_and_verify_bond_proof(proof_b64: str, maker_nick: str, taker_nick: str) -> FidelityBondProof:
    """Decode a ``!tbond`` proof received from ``maker_nick`` by ``taker_nick`` and verify both
    signatures.  Raises ``BondProofError``.  Chain checks: ``check_bond_utxo``."""
    proof = parse_bond_proof(proof_b64)
    proof.verify_signatures(taker_nick, maker_nick)
    return proof


def sign_bond_certificate(utxo_privkey: bytes, cert_pub: bytes, cert_expiry: int) -> bytes:
    """DER certificate signature by the bond utxo key (raw-pubkey variant, as Ref makers sign)."""
    if not 0 <= cert_expiry <= 0xFFFF:
        raise ValueError("cert_expiry must fit in uint16")
    return _sign_der(_privkey(utxo_privkey), cert_message(cert_pub, cert_expiry))


def create_bond_proof(
    *,
    cert_privkey: bytes,
    cert_sig: bytes,
    cert_expiry: int,
    utxo_pub: bytes,
    txid: str,
    vout: int,
    locktime: int,
    maker_nick: str,
    taker_nick: str,
) -> str:
    """Create the base64 ``!tbond`` proof for one taker (the nick signature is fresh per taker).

    Deterministic (RFC6979, no R grinding), so it reproduces Ref proofs byte for byte.
    """
    priv = _privkey(cert_privkey)
    cert_pub = priv.get_public_key_bytes(compressed=True)
    if not re.fullmatch(r"[0-9a-fA-F]{64}", txid or ""):
        raise ValueError("txid must be 64 hex chars")
    proof = FidelityBondProof(
        nick_sig=_sign_der(priv, nick_message(taker_nick, maker_nick)),
        cert_sig=bytes(cert_sig),
        cert_pub=cert_pub,
        cert_expiry=int(cert_expiry),
        utxo_pub=bytes(utxo_pub),
        txid=txid.lower(),
        vout=int(vout),
        locktime=int(locktime),
    )
    return proof.serialize()


def bond_redeem_script(utxo_pub: bytes, locktime: int) -> bytes:
    """``<locktime> OP_CHECKLOCKTIMEVERIFY OP_DROP <utxo_pub> OP_CHECKSIG`` (Ref ``mk_freeze_script``)."""
    return construct_script([int(locktime), opcodes.OP_CHECKLOCKTIMEVERIFY, opcodes.OP_DROP,
                             bytes(utxo_pub), opcodes.OP_CHECKSIG])


def bond_script_pubkey(utxo_pub: bytes, locktime: int) -> bytes:
    """P2WSH scriptPubKey of the bond: ``OP_0 <sha256(redeem_script)>``."""
    return b"\x00\x20" + sha256(bond_redeem_script(utxo_pub, locktime))


def check_bond_utxo(
    proof: FidelityBondProof,
    *,
    script_pubkey: Optional[bytes],
    confirmations: int,
    current_block_height: int,
) -> None:
    """Check the bond utxo against chain data supplied by the caller (Ref
    ``get_validated_timelocked_fidelity_bond_utxo``).

    ``script_pubkey`` None means the utxo is spent/unknown.  Raises ``BondProofError`` unless the
    utxo is unspent, has ``confirmations >= 1``, the certificate is unexpired
    (``current_block_height <= cert_expiry * 2016``) and the scriptPubKey is the bond's P2WSH.
    (Each bond utxo counts once per orderbook: :func:`bond_values`, D11.)
    """
    if script_pubkey is None:
        raise BondProofError("bond utxo is spent or unknown")
    if confirmations <= 0:
        raise BondProofError("bond utxo is unconfirmed")
    if current_block_height > proof.cert_valid_until_height:
        raise BondProofError("bond certificate expired")
    if bytes(script_pubkey) != bond_script_pubkey(proof.utxo_pub, proof.locktime):
        raise BondProofError("bond utxo scriptPubKey does not match the timelock script")


def calculate_timelocked_fidelity_bond_value(
    utxo_value: int,
    confirmation_time: int,
    locktime: int,
    current_time: float,
    interest_rate: float = DEFAULT_INTEREST_RATE,
    exponent: float = DEFAULT_BOND_VALUE_EXPONENT,
) -> float:
    """Bond value exactly as Ref computes it (Python floats, same operation order)::

        T = (locktime - confirmation_time)/YEAR; L = locktime/YEAR; t = current_time/YEAR
        a = max(0, min(1, e^{rT} - 1) - min(1, e^{r*max(0, t-L)} - 1))
        value = (utxo_value * a) ** exponent

    ``confirmation_time`` is the timestamp of the block that confirmed the utxo and
    ``current_time`` the median-time-past of the tip.  NG truncates the result to int; the
    weighting only needs relative values, so keep the float.
    """
    r = interest_rate
    T = (locktime - confirmation_time) / YEAR_SECONDS
    L = locktime / YEAR_SECONDS
    t = current_time / YEAR_SECONDS
    a = max(0, min(1, math.exp(r * T) - 1) - min(1, math.exp(r * max(0, t - L)) - 1))
    return pow(utxo_value * a, exponent)


async def bond_values(chain: Any, entries: Iterable[Any], *, tip_height: int,
                      header_at: Callable[[int], Optional[dict]], now: float,
                      taker_nick: Optional[str] = None, limit: int = 500) -> dict[str, float]:
    """Value of each maker's fidelity bond in an orderbook's bond list (absent when not
    verifiable or already counted), every bond's chain lookup issued at once.

    ``entries`` are the daemon's ``{"counterparty", "takernick", "proof"}`` dicts (at most
    ``limit`` are looked at; the first entry per maker counts); ``taker_nick`` overrides each
    entry's ``takernick`` (the nick the proof must be bound to).  ``chain`` is a
    :class:`~electrum_joinmarket.chain.server.ChainBackend`; the bond's own P2WSH script (known
    from the proof) is the script hint, so no other script is named to the server.

    Sybil rule (D11, as Ref ``calculate_fidelity_bond_values``): **each bond utxo counts once**.
    Nicks cost nothing, and whoever holds a bond's certificate key can sign a proof for any
    number of nicks; so the bond's value goes to the first maker in book order whose proof of it
    verifies completely (signatures, then the chain check), and every later nick presenting the
    same utxo gets nothing.  A proof that fails (a certificate or nick signature, an expired
    certificate, a utxo that is spent, unconfirmed or pays another script) counts zero and does
    not use up the utxo: a false claim on an honest maker's bond utxo cannot take its place.
    One chain lookup per claimed (utxo, script), however many nicks claim it.
    """
    from electrum_joinmarket.chain.server import ChainError
    first: dict[str, FidelityBondProof] = {}
    for entry in list(entries)[:limit]:
        if not isinstance(entry, dict):
            continue
        maker, proof_b64 = entry.get("counterparty"), entry.get("proof")
        taker = taker_nick if taker_nick is not None else entry.get("takernick")
        if (not isinstance(maker, str) or not isinstance(taker, str)
                or not isinstance(proof_b64, str) or maker in first):
            continue
        try:
            first[maker] = parse_and_verify_bond_proof(proof_b64, maker, taker)
        except BondProofError as exc:
            _log.info("fidelity bond of %s not counted: %s", maker, exc)

    def claim(proof: FidelityBondProof) -> tuple[str, bytes]:
        return proof.utxo, bond_script_pubkey(proof.utxo_pub, proof.locktime)

    async def lookup(key: tuple[str, bytes]) -> Any:
        try:
            return await chain.get_utxo(key[0], script_hint=key[1])
        except ChainError as exc:
            return exc
    claims = list(dict.fromkeys(claim(p) for p in first.values()))
    found = dict(zip(claims, await asyncio.gather(*(lookup(k) for k in claims)), strict=True))

    values: dict[str, float] = {}
    counted: dict[str, str] = {}          # bond utxo -> the maker it counted for
    for maker, proof in first.items():
        if proof.utxo in counted:
            _log.info("fidelity bond %s of %s not counted: it already counts for %s (D11)",
                      proof.utxo, maker, counted[proof.utxo])
            continue
        info = found[claim(proof)]
        try:
            if isinstance(info, ChainError):
                raise info
            check_bond_utxo(proof, script_pubkey=info.script_pubkey if info and info.unspent else None,
                            confirmations=info.confirmations if info else 0,
                            current_block_height=tip_height)
            header = header_at(info.height)
            if header is None:
                raise KeyError(f"no header at height {info.height}")
            value = calculate_timelocked_fidelity_bond_value(
                info.value, header["timestamp"], proof.locktime, now)
        except (BondProofError, ChainError, KeyError, TypeError, ValueError) as exc:
            _log.info("fidelity bond of %s not counted: %s", maker, exc)
            continue
        counted[proof.utxo] = maker
        values[maker] = value
    return values
