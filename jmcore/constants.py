"""JoinMarket protocol constants (reference: joinmarket-clientserver 0.9.12).

Every value here is taken from ``docs/protocol.md`` (section numbers in the
comments); nothing is invented.  Invariants:

* the values are wire constants: changing one breaks compatibility with the
  live network, so tests pin them;
* the collections are immutable (``frozenset``/``tuple``/``MappingProxyType``).

Standard library only.
"""
from __future__ import annotations

import sys
from types import MappingProxyType
from typing import Mapping

# --- versions / identity (§6.1, §12) -------------------------------------------------
JM_VERSION: int = 5
"""Protocol version: nick digit, onion ``proto-ver``, AMP ``JMInitProto``."""
APP_NAME: str = "joinmarket"
WIRE_NETWORKS: frozenset[str] = frozenset({"mainnet", "testnet", "signet"})
"""Network strings on the wire (regtest announces ``testnet``)."""
NETWORKS: tuple[str, ...] = ("mainnet", "testnet", "signet", "regtest")
"""The networks a client or a configuration may name."""

# --- nicks (§6.1) ---------------------------------------------------------------------
JOINMARKET_NICK_HEADER: str = "J"
NICK_HASH_LENGTH: int = 10
NICK_MAX_ENCODED: int = 14
NICK_PADDING_CHAR: str = "O"
NICK_LENGTH: int = len(JOINMARKET_NICK_HEADER) + 1 + NICK_MAX_ENCODED  # 16

# --- message layer (§4) ---------------------------------------------------------------
COMMAND_PREFIX: str = "!"
FIELD_SEPARATOR: str = " "

CMD_ORDERBOOK = "orderbook"
CMD_RELOFFER = "reloffer"
CMD_ABSOFFER = "absoffer"
CMD_SWRELOFFER = "swreloffer"
CMD_SWABSOFFER = "swabsoffer"
CMD_SW0RELOFFER = "sw0reloffer"
CMD_SW0ABSOFFER = "sw0absoffer"
CMD_TBOND = "tbond"
CMD_CANCEL = "cancel"
CMD_HP2 = "hp2"
CMD_FILL = "fill"
CMD_PUBKEY = "pubkey"
CMD_AUTH = "auth"
CMD_IOAUTH = "ioauth"
CMD_TX = "tx"
CMD_SIG = "sig"
CMD_PUSH = "push"
CMD_ERROR = "error"

REL_OFFER_TYPES: frozenset[str] = frozenset({CMD_RELOFFER, CMD_SWRELOFFER, CMD_SW0RELOFFER})
"""Offer types whose ``cjfee`` is a decimal fraction of the coinjoin amount."""
ABS_OFFER_TYPES: frozenset[str] = frozenset({CMD_ABSOFFER, CMD_SWABSOFFER, CMD_SW0ABSOFFER})
"""Offer types whose ``cjfee`` is an integer number of satoshis."""
OFFER_TYPES: frozenset[str] = REL_OFFER_TYPES | ABS_OFFER_TYPES
SW0_OFFER_TYPES: tuple[str, str] = (CMD_SW0RELOFFER, CMD_SW0ABSOFFER)
"""Native p2wpkh offers: what today's pit uses."""
SW_OFFER_TYPES: tuple[str, str] = (CMD_SWRELOFFER, CMD_SWABSOFFER)
LEGACY_OFFER_TYPES: tuple[str, str] = (CMD_RELOFFER, CMD_ABSOFFER)

OFFER_TYPE_SCRIPT: Mapping[str, str] = MappingProxyType({
    CMD_RELOFFER: "p2pkh", CMD_ABSOFFER: "p2pkh",
    CMD_SWRELOFFER: "p2sh-p2wpkh", CMD_SWABSOFFER: "p2sh-p2wpkh",
    CMD_SW0RELOFFER: "p2wpkh", CMD_SW0ABSOFFER: "p2wpkh",
})
"""Script type the maker spends and expects, by offer type (§4.2)."""

ENCRYPTED_COMMANDS: frozenset[str] = frozenset({CMD_AUTH, CMD_IOAUTH, CMD_TX, CMD_SIG})
"""The only commands whose body is NaCl-encrypted (chosen by name, §5)."""
PLAINTEXT_COMMANDS: frozenset[str] = frozenset(
    {CMD_ORDERBOOK, CMD_TBOND, CMD_CANCEL, CMD_HP2, CMD_FILL, CMD_PUBKEY, CMD_PUSH, CMD_ERROR}
) | OFFER_TYPES
ALL_COMMANDS: frozenset[str] = ENCRYPTED_COMMANDS | PLAINTEXT_COMMANDS
PUBLIC_COMMANDS: frozenset[str] = frozenset({CMD_ORDERBOOK, CMD_CANCEL, CMD_HP2}) | OFFER_TYPES
"""Commands that may appear in a public (unsigned) message."""
PRIVATE_COMMANDS: frozenset[str] = frozenset(
    {CMD_ORDERBOOK, CMD_TBOND, CMD_HP2, CMD_FILL, CMD_PUBKEY, CMD_PUSH, CMD_ERROR}
) | OFFER_TYPES | ENCRYPTED_COMMANDS
"""Commands that may appear in a private (signed) message (``!orderbook`` too: a taker may ask
one maker directly, as the reference does)."""
ORDER_KEYS: tuple[str, ...] = ("counterparty", "oid", "ordertype", "minsize", "maxsize", "txfee",
                               "cjfee")
"""The fields of one orderbook row, as ``JMOffers`` carries them (§4.3, §10)."""

COMMITMENT_TYPE_PODLE: str = "P"
"""First char of the ``!fill`` commitment (§7.3)."""
ONION_HOSTID: str = "onion-network"
"""hostid signed into every message carried over the onion channel (§3.5, §6.2)."""

# --- amounts (§4.3, §8.4) ------------------------------------------------------------
BITCOIN_DUST_THRESHOLD: int = 2730
DUST_THRESHOLD: int = 27300
"""JoinMarket dust: 10 x 2 730 sats; minimum offer minsize and maker change."""
MAX_SATOSHIS: int = 21 * 10**14
MAX_OID: int = sys.maxsize
"""Taker orderbook check: ``0 <= oid <= sys.maxsize`` (2**63 - 1 on 64-bit)."""

# --- channels: size limits (§2, §3.1) ---------------------------------------------------
IRC_MAX_LINE_LENGTH: int = 450
ONION_MAX_LINE_LENGTH: int = 40000
"""Ref onion peers disconnect on longer lines."""
ONION_SERVING_PORT: int = 5222
NOT_SERVING_ONION: str = "NOT-SERVING-ONION"

# onion message types (§3.2) -- wire values; 785/787/797 are Ref-local events
ONION_TYPE_PRIVMSG: int = 685
ONION_TYPE_PUBMSG: int = 687
ONION_TYPE_PEERLIST: int = 789
ONION_TYPE_GETPEERLIST: int = 791
ONION_TYPE_HANDSHAKE: int = 793
ONION_TYPE_DN_HANDSHAKE: int = 795
ONION_PUBLIC_TARGET: str = "PUBLIC"
ONION_WIRE_TYPES: frozenset[int] = frozenset({
    ONION_TYPE_PRIVMSG, ONION_TYPE_PUBMSG, ONION_TYPE_PEERLIST, ONION_TYPE_GETPEERLIST,
    ONION_TYPE_HANDSHAKE, ONION_TYPE_DN_HANDSHAKE})
"""The only onion message types that appear on the wire."""
SIGNATURE_OVERHEAD: int = 1 + 66 + 1 + 100
"""Bytes a private message's signature adds: `` <pubkey hex> <b64 DER sig>`` (§6.2)."""
IRC_CHANNEL_BASE: str = "joinmarket-pit"
"""The IRC channel, before the network suffix (§2, §12; see ``jmcore.channels.irc_channel_name``)."""

# --- AMP daemon (§10) -------------------------------------------------------------------
DEFAULT_DAEMON_PORT: int = 27183
DEFAULT_AMP_PORT: int = DEFAULT_DAEMON_PORT
SNICKER_PORT_OFFSET: int = 1000
"""SNICKER daemon port = daemon port - 1000."""
BIP78_PORT_OFFSET: int = 2000
"""BIP78 daemon port = daemon port - 2000."""

# --- taker defaults (§7.4, §8) ---------------------------------------------------------
TAKER_UTXO_RETRIES: int = 3
"""NUMS indices 0..2 accepted by makers."""
TAKER_UTXO_AGE: int = 5
TAKER_UTXO_AMTPERCENT: int = 20
MAKER_TIMEOUT_SEC: int = 60
MINIMUM_MAKERS: int = 4
TX_FEES_BLOCKS: int = 3
TX_FEES_FACTOR: float = 0.2
ABSURD_FEE_PER_KB: int = 350000
BONDLESS_MAKERS_ALLOWANCE: float = 0.125
MAX_SWEEP_FEE_CHANGE: float = 0.8
MAX_MAKER_INPUTS: int = 15
"""Cap on one maker's inputs in a coinjoin (joinmarket-ng; Ref has none; docs/testing.md M11)."""
UNCONFIRM_TIMEOUT_SEC: int = 180
STALL_TIMEOUT_FACTOR: int = 20

# --- fidelity bonds (§11) ---------------------------------------------------------------
FIDELITY_BOND_PROOF_LENGTH: int = 252
FIDELITY_BOND_PROOF_B64_LENGTH: int = 336
BOND_INTEREST_RATE: float = 0.015
BOND_VALUE_EXPONENT: float = 1.3
SECONDS_PER_YEAR: int = 31556952
