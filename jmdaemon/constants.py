"""Protocol constants used by the daemon (docs/protocol.md §4, §6, §12).

jmcore.constants carries the shared ones; the daemon keeps the few it needs here so it
does not depend on their exact names (values are fixed by the wire protocol anyway).
"""
from __future__ import annotations

JM_VERSION = 5
JOINMARKET_NICK_HEADER = "J"
NICK_HASH_LENGTH = 10
NICK_MAX_ENCODED = 14
NICK_LENGTH = 2 + NICK_MAX_ENCODED          # "J5" + 14 chars
COMMAND_PREFIX = "!"
DEFAULT_DAEMON_PORT = 27183

OFFER_TYPES = ("reloffer", "absoffer", "swreloffer", "swabsoffer", "sw0reloffer", "sw0absoffer")
REL_OFFER_TYPES = tuple(t for t in OFFER_TYPES if t.endswith("reloffer"))
ABS_OFFER_TYPES = tuple(t for t in OFFER_TYPES if t.endswith("absoffer"))
FIDELITY_BOND_CMD = "tbond"
COMMITMENT_BROADCAST_CMD = "hp2"
COMMITMENT_PREFIXES = ("P",)

ENCRYPTED_COMMANDS = ("auth", "ioauth", "tx", "sig")
PLAINTEXT_COMMANDS = (("fill", "error", "pubkey", "orderbook", "push", FIDELITY_BOND_CMD,
                       COMMITMENT_BROADCAST_CMD) + OFFER_TYPES)
ALL_PRIVATE_COMMANDS = PLAINTEXT_COMMANDS + ENCRYPTED_COMMANDS
ORDER_KEYS = ("counterparty", "oid", "ordertype", "minsize", "maxsize", "txfee", "cjfee")

ONION_HOSTID = "onion-network"
ONION_VIRTUAL_PORT = 5222
NOT_SERVING_ONION = "NOT-SERVING-ONION"
APP_NAME = "joinmarket"

# onion wire types (§3.2); only these may appear on the wire in our code
ONION_PRIVMSG = 685
ONION_PUBMSG = 687
ONION_PEERLIST = 789
ONION_GETPEERLIST = 791
ONION_HANDSHAKE = 793
ONION_DN_HANDSHAKE = 795
ONION_WIRE_TYPES = frozenset({ONION_PRIVMSG, ONION_PUBMSG, ONION_PEERLIST, ONION_GETPEERLIST,
                              ONION_HANDSHAKE, ONION_DN_HANDSHAKE})

# limits (docs/protocol.md §2, §3.1, §13)
MAX_PRIVMSG_LEN = 450                  # IRC line incl. "PRIVMSG nick :"
MAX_ONION_LINE = 65536                 # bytes per onion JSON line (NG directory limit; Ref 40 000)
MAX_MESSAGE_LEN = 65536                # a reassembled JM message (IRC chunks)
MAX_OUR_LINE = 40000                   # bytes of any onion line we send, and of any JM message we
                                       # send on any channel (Ref disconnects longer lines, §3.1)
SIGNATURE_OVERHEAD = 1 + 66 + 1 + 100  # " <pubkey hex> <b64 DER sig>" appended by the client
MAX_SATS = 21 * 10 ** 14
JM_DUST = 27300

IRC_CHANNEL_BASE = "joinmarket-pit"


def network_for_wire(network: str | None) -> str:
    """The network name announced on the wire: regtest runs as testnet (§12)."""
    network = (network or "mainnet").lower()
    if network in ("regtest", "testnet", "testnet3", "testnet4"):
        return "testnet"
    if network == "signet":
        return "signet"
    return "mainnet"


def irc_channel_name(base: str, network: str | None) -> str:
    net = network_for_wire(network)
    suffix = {"mainnet": "", "testnet": "-test", "signet": "-sig"}[net]
    base = base.lstrip("#")
    if suffix and base.endswith(suffix):
        suffix = ""
    return "#" + base + suffix
