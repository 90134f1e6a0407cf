"""The maker's ``!ioauth`` body and the taker's check of it (docs/protocol.md §5, §8.4, §9 step 4).

Plaintext body (NaCl-encrypted on the wire; vector ``ioauth_and_sig.json``)::

    <txid:n>[,<txid:n>…] <auth_pub_hex> <cj_addr> <change_addr> <btc_sig_b64>

``btc_sig`` is the Bitcoin-message ECDSA signature (base64 DER, as nick signatures, §6.2) over the
ASCII hex of the maker's *own* NaCl public key, by ``auth_pub`` — the key of one of the maker's
inputs.  It binds the encrypted session to a key that controls real coins (anti-MITM, §13).

Taker-side invariants (:func:`verify_ioauth`; each refusal raises :class:`IoauthRejected` with the
docs/testing.md case id, and nothing is asked of the server before the cheap checks pass):

* ``D1`` the body is malformed (field count, utxo syntax, pubkey/signature encoding, sizes);
* ``M11`` more maker inputs than ``max_inputs`` (15, as joinmarket-ng) — an unbounded list lets a
  maker push miner fees onto the taker and bloat the transaction;
* ``M8`` an outpoint listed twice (compared canonically: txid case and index spelling do not
  matter), already declared by another maker of this coinjoin, or equal to one of ours;
* ``M6`` the coinjoin or change address is not a valid address of the network we run on;
* ``M5`` ``btc_sig`` is not a valid signature by ``auth_pub`` over the maker's NaCl pubkey hex;
* ``M1`` an input does not exist; ``M2`` an input is spent; ``M3`` an input has fewer than
  ``min_confirmations`` (1) confirmations — all from :mod:`electrum_joinmarket.chain.server`, which
  SPV-checks confirmed transactions against Electrum's verified headers;
* ``M4`` ``auth_pub`` owns none of the inputs (p2wpkh, p2sh-p2wpkh or p2pkh of that key);
* ``M7`` the maker's change ``Σin − cj_amount − txfee + real_cjfee`` is below ``dust`` (27 300).

Chain failures that are not the maker's fault (server unreachable, SPV proof failing) are raised
as :class:`electrum_joinmarket.chain.server.ChainError`: the maker is then neither accepted nor blamed,
and the taker must not sign (docs/architecture.md invariant 1, docs/testing.md F2).

The result, :class:`VerifiedIoauth`, carries the :class:`~electrum_joinmarket.chain.utxo.UtxoInfo` of
every maker input (value + scriptPubKey) for the transaction builder.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Union

import electrum_ecc as ecc

from electrum_joinmarket.chain.server import BadOutpoint, ChainBackend, canonical_outpoint
from electrum_joinmarket.chain.utxo import UtxoInfo
from electrum_joinmarket.errors import Failure, JoinMarketError
from electrum_joinmarket.logs import get_logger
from electrum_joinmarket.protocol.nick import (
    NickSignatureError,
    parse_pubkey_hex,
    sign_message,
    verify_message_signature,
)
from electrum_joinmarket.protocol.podle import pubkey_matches_script, pubkey_script
from jmcore.constants import DUST_THRESHOLD, MAX_MAKER_INPUTS
from jmcore.offers import Offer, maker_change

__all__ = [
    "MAX_MAKER_INPUTS", "MAX_IOAUTH_BODY_LEN", "IOAUTH_CASE_IDS",
    "IoauthRejected", "ParsedIoauth", "VerifiedIoauth",
    "parse_ioauth", "make_ioauth", "verify_btc_sig", "verify_ioauth",
]

_log = get_logger(__name__)

MAX_IOAUTH_BODY_LEN: int = 20_000
"""Hard bound on the plaintext before any parsing (a 15-input body is ~1.3 kB)."""
_HARD_MAX_UTXOS = 200          # parse bound, independent of the policy cap (M11 gives the verdict)
_MAX_ADDR_LEN = 100            # bech32 addresses are at most 90 characters
_NACL_PUB_RE = re.compile(r"[0-9a-fA-F]{64}\Z")
_ADDR_RE = re.compile(r"[0-9A-Za-z]{14,100}\Z")

IOAUTH_CASE_IDS = frozenset({"D1", "M1", "M2", "M3", "M4", "M5", "M6", "M7", "M8", "M11"})


class IoauthRejected(JoinMarketError):
    """The maker's ``!ioauth`` fails check ``case_id`` (docs/testing.md ids; ``D1`` = malformed)."""

    failure = Failure.MAKERS

    def __init__(self, case_id: str, reason: str):
        assert case_id in IOAUTH_CASE_IDS, case_id
        super().__init__(f"[{case_id}] {reason}")
        self.case_id = case_id
        self.reason = reason


@dataclass(frozen=True)
class ParsedIoauth:
    """A syntactically valid ``!ioauth`` body (nothing verified yet).  ``utxos`` are canonical
    ``txid:n`` strings in the maker's order (duplicates kept, so they can be refused)."""
    utxos: tuple[str, ...]
    auth_pub: str
    cj_addr: str
    change_addr: str
    btc_sig: str


@dataclass(frozen=True)
class VerifiedIoauth:
    """A maker's ``!ioauth`` that passed every check, with what the tx builder needs."""
    utxos: tuple[UtxoInfo, ...]
    auth_pub: str
    cj_addr: str
    change_addr: str
    btc_sig: str
    total_input: int
    real_cjfee: int
    txfee: int
    change: int            # Σin − cj_amount − txfee + real_cjfee  (>= dust)

    @property
    def outpoints(self) -> tuple[str, ...]:
        return tuple(u.outpoint for u in self.utxos)


def _reject(case_id: str, reason: str) -> IoauthRejected:
    _log.info("ioauth refused: [%s] %s", case_id, reason)
    return IoauthRejected(case_id, reason)


def parse_ioauth(body: str) -> ParsedIoauth:
    """Parse the decrypted ``!ioauth`` plaintext strictly; raises ``IoauthRejected('D1', …)``.

    Exactly five fields separated by single spaces; a non-empty comma-separated list of
    ``txid:n`` (strict, see :func:`electrum_joinmarket.protocol.podle.parse_utxo_str`; the NG extended form
    is not negotiated by us and is refused); a lower-case compressed public key; two address-shaped
    tokens (validity for the network is checked by :func:`verify_ioauth`, M6); a base64 DER
    signature.  Never raises anything else, for any ``str``.
    """
    if not isinstance(body, str):
        raise _reject("D1", "ioauth body is not text")
    if len(body) > MAX_IOAUTH_BODY_LEN:
        raise _reject("D1", f"ioauth body too long ({len(body)} chars)")
    fields = body.split(" ")
    if len(fields) != 5:
        raise _reject("D1", f"ioauth body has {len(fields)} fields, expected 5")
    utxo_field, auth_pub, cj_addr, change_addr, btc_sig = fields
    items = utxo_field.split(",")
    if len(items) > _HARD_MAX_UTXOS:
        raise _reject("M11", f"{len(items)} maker inputs")
    try:
        utxos = tuple(canonical_outpoint(u) for u in items)
    except BadOutpoint as exc:
        raise _reject("D1", f"bad utxo in ioauth: {exc}") from None
    try:
        parse_pubkey_hex(auth_pub)
    except NickSignatureError as exc:
        raise _reject("D1", f"bad auth_pub: {exc}") from None
    for name, addr in (("cj_addr", cj_addr), ("change_addr", change_addr)):
        if not _ADDR_RE.match(addr):
            raise _reject("D1", f"{name} is not an address token")
    if not btc_sig or len(btc_sig) > 96 or not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", btc_sig):
        raise _reject("D1", "btc_sig is not base64")
    return ParsedIoauth(utxos, auth_pub, cj_addr, change_addr, btc_sig)


def _privkey(auth_privkey: Union[bytes, str, ecc.ECPrivkey]) -> ecc.ECPrivkey:
    if isinstance(auth_privkey, ecc.ECPrivkey):
        return auth_privkey
    if isinstance(auth_privkey, str):
        auth_privkey = bytes.fromhex(auth_privkey)
    if not isinstance(auth_privkey, (bytes, bytearray)):
        raise TypeError("auth_privkey must be bytes, hex or ECPrivkey")
    secret = bytes(auth_privkey)
    if len(secret) == 33 and secret[-1] == 0x01:   # WIF-style 'compressed' flag
        secret = secret[:32]
    if len(secret) != 32:
        raise ValueError("auth_privkey must be 32 bytes")
    return ecc.ECPrivkey(secret)


def make_ioauth(utxos: Iterable[Union[str, UtxoInfo]], auth_privkey: Union[bytes, str, ecc.ECPrivkey],
                maker_nacl_pubkey_hex: str, cj_addr: str, change_addr: str) -> str:
    """The maker's ``!ioauth`` plaintext (Ref ``Maker.on_auth_received``).

    ``auth_privkey`` is the key of one of ``utxos`` (the taker checks that, M4); the signature is
    over ``maker_nacl_pubkey_hex`` exactly as sent in our ``!pubkey``.  Refuses to produce a body
    the protocol cannot carry (empty input list, separators inside fields).
    """
    outs = [u.outpoint if isinstance(u, UtxoInfo) else u for u in utxos]
    if not outs:
        raise ValueError("ioauth needs at least one utxo")
    outs = [canonical_outpoint(u) for u in outs]
    if not isinstance(maker_nacl_pubkey_hex, str) or not _NACL_PUB_RE.match(maker_nacl_pubkey_hex):
        raise ValueError("maker NaCl pubkey must be 64 hex characters")
    for addr in (cj_addr, change_addr):
        if not isinstance(addr, str) or not _ADDR_RE.match(addr):
            raise ValueError(f"not an address: {addr!r}")
    priv = _privkey(auth_privkey)
    btc_sig = sign_message(priv, maker_nacl_pubkey_hex)
    return " ".join([",".join(outs), priv.get_public_key_hex(compressed=True), cj_addr,
                     change_addr, btc_sig])


def verify_btc_sig(auth_pub_hex: str, btc_sig_b64: str, maker_nacl_pubkey_hex: str) -> bool:
    """True iff ``btc_sig_b64`` is ``auth_pub``'s Bitcoin-message signature over the NaCl pubkey
    hex string.  False for any malformed input."""
    if not isinstance(maker_nacl_pubkey_hex, str) or not _NACL_PUB_RE.match(maker_nacl_pubkey_hex):
        return False
    return verify_message_signature(auth_pub_hex, btc_sig_b64, maker_nacl_pubkey_hex)


def _default_addr_check(addr: str) -> bool:
    from electrum import constants
    from electrum.bitcoin import is_address
    return is_address(addr, net=constants.net)


async def verify_ioauth(body: str, maker_nacl_pubkey_hex: str, chain: ChainBackend, *,
                        cj_amount: int, offer: Offer,
                        network_addr_check: Optional[Callable[[str], bool]] = None,
                        dust: int = DUST_THRESHOLD, max_inputs: int = MAX_MAKER_INPUTS,
                        min_confirmations: int = 1,
                        taker_utxos: Iterable[str] = (),
                        other_makers_utxos: Iterable[str] = ()) -> VerifiedIoauth:
    """Check one maker's decrypted ``!ioauth`` (see module docstring for every check and order).

    ``offer`` is the offer we filled with this maker (its ``txfee`` and fee at ``cj_amount``
    define the expected change); ``network_addr_check`` defaults to Electrum's ``is_address`` on
    the network Electrum runs on.  ``taker_utxos`` / ``other_makers_utxos`` are outpoints already
    in this coinjoin.  Raises :class:`IoauthRejected`, or ``ChainError`` when the chain could not
    be asked / gave an unverifiable answer.
    """
    if isinstance(cj_amount, bool) or not isinstance(cj_amount, int) or cj_amount <= 0:
        raise ValueError("cj_amount must be a positive int")
    if not isinstance(offer, Offer):
        raise TypeError("offer must be a jmcore.offers.Offer")
    addr_ok = network_addr_check or _default_addr_check
    p = parse_ioauth(body)

    # -- cheap checks first: nothing is asked of the server for an obviously bad answer --------
    if len(p.utxos) > max_inputs:
        raise _reject("M11", f"{len(p.utxos)} maker inputs, cap is {max_inputs}")
    if len(set(p.utxos)) != len(p.utxos):
        raise _reject("M8", "the same utxo is declared twice")
    ours = {_canon_or_none(u) for u in taker_utxos}
    others = {_canon_or_none(u) for u in other_makers_utxos}
    for u in p.utxos:
        if u in ours:
            raise _reject("M8", f"maker declares our own utxo {u}")
        if u in others:
            raise _reject("M8", f"utxo {u} already declared by another maker")
    for name, addr in (("coinjoin", p.cj_addr), ("change", p.change_addr)):
        try:
            valid = bool(addr_ok(addr))
        except Exception:
            valid = False
        if not valid:
            raise _reject("M6", f"{name} address {addr[:100]!r} is not valid on this network")
    if not verify_btc_sig(p.auth_pub, p.btc_sig, maker_nacl_pubkey_hex):
        raise _reject("M5", "btc_sig does not sign the maker's NaCl pubkey with auth_pub")

    # -- chain checks -----------------------------------------------------------------------
    # auth_pub owns at least one input (M4), normally of the offer's type: that script's unspent
    # list is asked together with the transactions (no script outside this coinjoin is named)
    try:
        hint: Optional[bytes] = pubkey_script(bytes.fromhex(p.auth_pub), offer.script_type)
    except (KeyError, ValueError):
        hint = None
    infos = await chain.get_utxos(list(p.utxos), script_hint=hint)
    checked: list[UtxoInfo] = []
    for u, info in zip(p.utxos, infos, strict=True):     # one answer per utxo asked
        if info is None:
            raise _reject("M1", f"maker utxo {u} does not exist")
        if not info.unspent:
            raise _reject("M2", f"maker utxo {u} is already spent")
        if info.confirmations < min_confirmations:
            raise _reject("M3", f"maker utxo {u} has {info.confirmations} confirmation(s), "
                                f"need {min_confirmations}")
        checked.append(info)
    pub = bytes.fromhex(p.auth_pub)
    if not any(pubkey_matches_script(pub, i.script_pubkey) for i in checked):
        raise _reject("M4", "auth_pub owns none of the maker's utxos")
    total = sum(i.value for i in checked)
    real_cjfee = offer.real_cjfee(cj_amount)
    change = maker_change(total, cj_amount, offer.txfee, real_cjfee)
    if change < dust:
        raise _reject("M7", f"maker change {change} below dust {dust} "
                            f"(inputs {total}, amount {cj_amount}, txfee {offer.txfee}, "
                            f"cjfee {real_cjfee})")
    return VerifiedIoauth(tuple(checked), p.auth_pub, p.cj_addr, p.change_addr, p.btc_sig,
                          total, real_cjfee, offer.txfee, change)


def _canon_or_none(u: str) -> Optional[str]:
    try:
        return canonical_outpoint(u)
    except BadOutpoint:
        return None
