"""JoinMarket nick keys, nick derivation and private-message signatures.

Wire reference: docs/protocol.md §6 (vectors ``nicks.json`` and ``privmsg_signing.json``).

Nick derivation (§6.1)::

    h    = sha256(ascii(hex(compressed_pubkey)))[:10]     # hash of the HEX STRING
    enc  = base58(h)                                      # Bitcoin alphabet, no checksum
    nick = "J" + "5" + enc + "O" * (14 - len(enc))        # always 16 characters

Private-message signature (§6.2)::

    signed_string = body + hostid
    sig = b64(DER(ECDSA_RFC6979(sha256d(b"\\x18Bitcoin Signed Message:\\n"
                                        || varint(len) || utf8(signed_string)))))

Security invariants enforced here:

* A signature is accepted only if it verifies under the *claimed* public key AND that public key
  derives exactly the claimed nick (``verify_nick_signature``).  A message signed by a key that
  does not match the nick (impersonation, PROTOCOL M13) is rejected.
* The hostid (channel identity) is part of the signed string, so a message captured on one channel
  cannot be replayed on another (cross-channel replay).  Same-channel replay is *not* prevented by
  signatures (that is the session state machine's job).
* Everything arriving from the network is parsed strictly: the public key must be 66 lower-case hex
  characters of a valid compressed point, the signature strict base64 of a strict-DER ECDSA
  signature of bounded size.  Malformed input never raises anything but ``NickSignatureError``
  subclasses from the parsing helpers, and ``verify_nick_signature`` simply returns ``False``.
* The nick private key is never logged: ``NickKey.__repr__`` shows only the nick.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Optional

import electrum_ecc as ecc
from electrum.bitcoin import base_encode, usermessage_magic
from electrum.crypto import sha256, sha256d

from electrum_joinmarket.errors import JoinMarketError
from jmcore.constants import JM_VERSION, JOINMARKET_NICK_HEADER, NICK_HASH_LENGTH, NICK_MAX_ENCODED

__all__ = [
    "NICK_HASH_LENGTH",
    "NICK_MAX_ENCODED",
    "JOINMARKET_NICK_HEADER",
    "JM_VERSION",
    "NickError",
    "NickSignatureError",
    "NickKey",
    "nick_from_pubkey",
    "nick_matches_pubkey",
    "message_hash",
    "sign_message",
    "parse_pubkey_hex",
    "parse_signature_b64",
    "verify_message_signature",
    "verify_nick_signature",
]

# NICK_HASH_LENGTH, NICK_MAX_ENCODED, JOINMARKET_NICK_HEADER, JM_VERSION (jmcore.constants): sent
# by the daemon in JMInitProto (Ref: jmdaemon/protocol.py) and fixed on the live network.
# Callers may pass the values received in JMInitProto explicitly.

# A DER ECDSA signature is at most 72 bytes (2 + 2*(2+33)); its base64 at most 96 chars.
_MAX_DER_SIG_LEN = 72
_MAX_SIG_B64_LEN = 96
# Signed strings are JM message bodies; bound them so hostile input cannot make us hash megabytes
# for nothing.  (The largest legitimate body, an encrypted !tx, stays well below 1 MiB.)
MAX_SIGNED_STRING_LEN = 2_000_000

_PUBKEY_HEX_RE = re.compile(r"0[23][0-9a-f]{64}\Z")
_B64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}\Z")


class NickError(JoinMarketError, ValueError):
    """Base class for nick / nick-signature errors."""


class NickSignatureError(NickError):
    """A public key or signature from the network is malformed."""


def _check_nick_params(hash_len: int, max_encoded: int, header: str, version: int) -> None:
    # Guard against absurd values coming from a (possibly foreign) daemon's JMInitProto.
    if not (1 <= hash_len <= 32) or not (1 <= max_encoded <= 64):
        raise NickError(f"unsupported nick parameters: hashlen={hash_len} max_encoded={max_encoded}")
    if not isinstance(header, str) or not isinstance(version, int) or version < 0:
        raise NickError("unsupported nick header/version")


def nick_from_pubkey(
    pubkey_hex: str,
    *,
    hash_len: int = NICK_HASH_LENGTH,
    max_encoded: int = NICK_MAX_ENCODED,
    header: str = JOINMARKET_NICK_HEADER,
    version: int = JM_VERSION,
) -> str:
    """Derive the JoinMarket nick for a public key given as its hex string (§6.1).

    The hash input is the ASCII hex string itself (not the key bytes); callers must therefore pass
    the exact string that goes on the wire (lower-case compressed key).  The base58 encoding is
    right-padded with ``O`` (not in the base58 alphabet) to ``max_encoded`` characters.
    """
    _check_nick_params(hash_len, max_encoded, header, version)
    if not isinstance(pubkey_hex, str):
        raise NickError("pubkey_hex must be str")
    h = sha256(pubkey_hex.encode("ascii", errors="strict"))[:hash_len]
    enc = base_encode(h, base=58)
    if len(enc) > max_encoded:  # impossible with the network's 10/14; guard for odd parameters
        raise NickError("encoded nick hash longer than max_encoded")
    return header + str(version) + enc + "O" * (max_encoded - len(enc))


def nick_matches_pubkey(
    nick: str,
    pubkey_hex: str,
    *,
    hash_len: int = NICK_HASH_LENGTH,
    max_encoded: int = NICK_MAX_ENCODED,
    header: str = JOINMARKET_NICK_HEADER,
    version: int = JM_VERSION,
) -> bool:
    """True iff ``nick`` is exactly the nick derived from ``pubkey_hex``.

    This is the full-nick comparison (as joinmarket-ng does), stricter than Ref 0.9.12, which only
    compares the O-stripped middle part and ignores the ``J5`` prefix.  Every honest node derives
    its nick with the same procedure, so the stricter check costs no compatibility.
    """
    if not isinstance(nick, str) or not isinstance(pubkey_hex, str):
        return False
    try:
        return nick == nick_from_pubkey(
            pubkey_hex, hash_len=hash_len, max_encoded=max_encoded, header=header, version=version)
    except (NickError, UnicodeError):
        return False


def message_hash(signed_string: str) -> bytes:
    """The 32-byte digest that is ECDSA-signed: sha256d of the Bitcoin-message framing of the
    UTF-8 encoding of ``signed_string`` (= body + hostid)."""
    return sha256d(usermessage_magic(signed_string.encode("utf-8")))


def parse_pubkey_hex(pubkey_hex: str) -> ecc.ECPubkey:
    """Strictly parse a nick public key from the wire.

    Accepted: exactly 66 lower-case hex characters encoding a valid compressed secp256k1 point.
    Upper-case or uncompressed forms are rejected: the nick is the hash of this exact string, and
    honest implementations (Ref, NG) always send lower-case compressed keys.
    """
    if not isinstance(pubkey_hex, str) or not _PUBKEY_HEX_RE.match(pubkey_hex):
        raise NickSignatureError("nick pubkey must be 66 lower-case hex chars (compressed key)")
    try:
        return ecc.ECPubkey(bytes.fromhex(pubkey_hex))
    except ecc.InvalidECPointException as e:
        raise NickSignatureError("nick pubkey is not a valid curve point") from e


def parse_signature_b64(sig_b64: str) -> bytes:
    """Strictly parse a base64 DER signature from the wire; returns the 64-byte (r||s) form.

    Strict base64 (standard alphabet, correct padding), at most 72 decoded bytes, strict DER as
    understood by libsecp256k1.  The result is normalised to low-S (Ref, via python-bitcointx,
    also accepts high-S signatures; a high-S signature is a malleated but valid signature).
    """
    if not isinstance(sig_b64, str) or not (0 < len(sig_b64) <= _MAX_SIG_B64_LEN):
        raise NickSignatureError("signature missing or too long")
    if not _B64_RE.match(sig_b64):
        raise NickSignatureError("signature is not base64")
    try:
        der = base64.b64decode(sig_b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise NickSignatureError("signature is not valid base64") from e
    if not (8 <= len(der) <= _MAX_DER_SIG_LEN) or der[0] != 0x30:
        raise NickSignatureError("signature is not a DER ECDSA signature")
    try:
        sig64 = ecc.ecdsa_sig64_from_der_sig(der)
    except Exception as e:  # electrum_ecc raises a bare Exception("Bad signature")
        raise NickSignatureError("signature is not valid DER") from e
    # libsecp256k1 parses out-of-range r/s as zero; such a signature can never verify.
    if not any(sig64[:32]) or not any(sig64[32:]):
        raise NickSignatureError("signature r or s is zero / out of range")
    return sig64


def sign_message(privkey: ecc.ECPrivkey, signed_string: str) -> str:
    """Sign ``signed_string`` the JoinMarket way; returns base64 of the DER signature.

    RFC6979 deterministic nonce, *no* low-R grinding (matches Ref byte for byte), low-S.
    """
    if not isinstance(signed_string, str):
        raise TypeError("signed_string must be str")
    der = privkey.ecdsa_sign(
        message_hash(signed_string),
        sigencode=ecc.ecdsa_der_sig_from_r_and_s,
        grind_r_value=False,
    )
    return base64.b64encode(der).decode("ascii")


def verify_message_signature(pubkey_hex: str, sig_b64: str, signed_string: str) -> bool:
    """Verify a base64-DER JoinMarket message signature over ``signed_string``.

    Does NOT check the nick binding (see ``verify_nick_signature``).  Returns False for any
    malformed input; never raises for network data.
    """
    if not isinstance(signed_string, str) or len(signed_string) > MAX_SIGNED_STRING_LEN:
        return False
    try:
        pub = parse_pubkey_hex(pubkey_hex)
        sig64 = parse_signature_b64(sig_b64)
        h = message_hash(signed_string)
    except (NickSignatureError, UnicodeError):
        return False
    return pub.ecdsa_verify(sig64, h)


def verify_nick_signature(
    nick: str,
    pubkey_hex: str,
    sig_b64: str,
    message: str,
    hostid: str,
    *,
    accept_lowercase_hostid: bool = True,
    hash_len: int = NICK_HASH_LENGTH,
    max_encoded: int = NICK_MAX_ENCODED,
) -> bool:
    """Verify a signed JoinMarket private message from ``nick`` (§6.2).

    ``message`` is the signed body (everything between the command word and the pubkey field; for
    encrypted commands the base64 ciphertext) and ``hostid`` the id of the channel the message was
    *received* on (``onion-network`` or the IRC NETWORK name).  Checks, all required:

    1. ``pubkey_hex`` is a well-formed compressed key and derives exactly ``nick`` — a message signed
       by a key that does not match the nick is rejected (impersonation, M13);
    2. ``sig_b64`` is a valid signature by that key over ``message + hostid`` — binding the channel
       stops cross-channel replay.  Like Ref, ``message + hostid.lower()`` is also accepted when
       ``accept_lowercase_hostid`` (some IRC servers lower-case NETWORK).

    Returns False on any failure or malformed input.
    """
    if not isinstance(message, str) or not isinstance(hostid, str) or not hostid:
        return False
    if not message:
        # Ref requires a non-empty signed body (§4.1).
        return False
    if not nick_matches_pubkey(nick, pubkey_hex, hash_len=hash_len, max_encoded=max_encoded):
        return False
    if verify_message_signature(pubkey_hex, sig_b64, message + hostid):
        return True
    if accept_lowercase_hostid and hostid.lower() != hostid:
        return verify_message_signature(pubkey_hex, sig_b64, message + hostid.lower())
    return False


class NickKey:
    """The nick identity of one JoinMarket session: an ephemeral secp256k1 key and its nick.

    ``NickKey()`` draws a fresh random key (Electrum's CSPRNG via electrum_ecc), as Ref does once
    per run; reusing a nick across runs would link the runs.  ``NickKey.from_secret`` exists for
    tests and vectors.  The secret is never part of ``repr``/``str``.
    """

    __slots__ = ("_priv", "_pubkey_hex", "_nick", "_params")

    def __init__(
        self,
        privkey: Optional[ecc.ECPrivkey] = None,
        *,
        hash_len: int = NICK_HASH_LENGTH,
        max_encoded: int = NICK_MAX_ENCODED,
        header: str = JOINMARKET_NICK_HEADER,
        version: int = JM_VERSION,
    ) -> None:
        if privkey is None:
            privkey = ecc.ECPrivkey.generate_random_key()
        if not isinstance(privkey, ecc.ECPrivkey):
            raise TypeError("privkey must be an electrum_ecc.ECPrivkey")
        self._priv = privkey
        self._pubkey_hex = privkey.get_public_key_hex(compressed=True)
        self._params: dict[str, Any] = dict(hash_len=hash_len, max_encoded=max_encoded,
                                            header=header, version=version)
        self._nick = nick_from_pubkey(self._pubkey_hex, **self._params)

    @classmethod
    def from_secret(cls, secret: bytes, **params) -> "NickKey":
        """Build from a 32-byte secret (or 33 bytes ending in the 0x01 'compressed' flag)."""
        if not isinstance(secret, (bytes, bytearray)):
            raise TypeError("secret must be bytes")
        secret = bytes(secret)
        if len(secret) == 33 and secret[-1] == 0x01:
            secret = secret[:32]
        if len(secret) != 32:
            raise NickError("nick secret must be 32 bytes")
        try:
            priv = ecc.ECPrivkey(secret)
        except ecc.InvalidECPointException as e:
            raise NickError("nick secret out of range") from e
        return cls(priv, **params)

    @property
    def nick(self) -> str:
        """The 16-character JoinMarket nick."""
        return self._nick

    @property
    def pubkey_hex(self) -> str:
        """The compressed public key as 66 lower-case hex characters (the wire form)."""
        return self._pubkey_hex

    def sign(self, message: str, hostid: str) -> str:
        """Sign a private-message body for the channel ``hostid``; returns base64 DER."""
        if not isinstance(hostid, str) or not hostid:
            raise NickError("hostid must be a non-empty str")
        return sign_message(self._priv, message + hostid)

    def sign_string(self, signed_string: str) -> str:
        """Sign an already assembled ``body + hostid`` string (AMP ``msg_to_be_signed``)."""
        return sign_message(self._priv, signed_string)

    def signed_privmsg_fields(self, message: str, hostid: str) -> str:
        """``message + " " + pubkey_hex + " " + sig`` — the ``msg_to_return`` of JMMsgSignature."""
        return f"{message} {self._pubkey_hex} {self.sign(message, hostid)}"

    def verify(self, sig_b64: str, message: str, hostid: str) -> bool:
        """Verify a signature by this key (convenience for tests and self-checks)."""
        return verify_nick_signature(self._nick, self._pubkey_hex, sig_b64, message, hostid)

    def __repr__(self) -> str:
        return f"<NickKey {self._nick}>"

    __str__ = __repr__

    def __reduce__(self):  # never pickle/copy the secret by accident
        raise TypeError("NickKey cannot be pickled")
