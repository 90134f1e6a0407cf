"""NaCl boxes for the four encrypted JoinMarket commands (docs/protocol.md §5), on pynacl.

Wire layout of an encrypted body: base64(nonce[24] || poly1305 tag[16] || ciphertext), a fresh random
nonce per message (a fixed nonce may be passed only to reproduce test vectors).

pynacl (libsodium through cffi, about 1 MiB) is imported on first use, not by an idle daemon.
"""
from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

if TYPE_CHECKING:                 # imported lazily at run time (see above)
    from nacl.public import Box, PrivateKey, PublicKey

NONCE_SIZE = 24          # nacl.public.Box.NONCE_SIZE
MAC_SIZE = 16            # poly1305 tag


class NaclError(Exception):
    pass


def init_keypair(secret_hex: str | None = None) -> PrivateKey:
    """A new X25519 keypair (or one from a fixed secret, for vectors)."""
    from nacl.public import PrivateKey
    if secret_hex is not None:
        return PrivateKey(bytes.fromhex(secret_hex))
    return PrivateKey.generate()


def hex_pk(keypair: PrivateKey) -> str:
    return bytes(keypair.public_key).hex()


def init_pubkey(hexpk: object) -> PublicKey:
    """Parse a counterparty's 64-hex-char NaCl public key; NaclError if it is not one."""
    if not isinstance(hexpk, str) or len(hexpk) != 64:
        raise NaclError("invalid nacl pubkey length")
    try:
        raw = bytes.fromhex(hexpk)
    except ValueError:
        raise NaclError("invalid nacl pubkey hex") from None
    from nacl.public import PublicKey
    return PublicKey(raw)


def as_init_encryption(keypair: PrivateKey, counterparty_pub: PublicKey) -> Box:
    """A box between our keypair and their public key (libsodium crypto_box_beforenm)."""
    from nacl.public import Box
    try:
        return Box(keypair, counterparty_pub)
    except Exception as exc:  # pynacl raises various types for bad points
        raise NaclError(str(exc)) from exc


def encrypt_encode(msg: str | bytes, box: Box, nonce: bytes | None = None) -> str:
    """Encrypt bytes and return the base64 text that goes on the wire."""
    if isinstance(msg, str):
        msg = msg.encode("ascii")
    encrypted = box.encrypt(msg, nonce) if nonce is not None else box.encrypt(msg)
    return base64.b64encode(bytes(encrypted)).decode("ascii")


def decode_decrypt(b64text: str | bytes, box: Box) -> bytes:
    """Decode base64 and decrypt; NaclError on bad base64, short input or a bad MAC."""
    try:
        raw = base64.b64decode(b64text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise NaclError("bad base64") from None
    if len(raw) < NONCE_SIZE + MAC_SIZE:
        raise NaclError("ciphertext too short")
    from nacl.exceptions import CryptoError
    try:
        return box.decrypt(raw)
    except CryptoError:
        raise NaclError("decryption failed") from None
