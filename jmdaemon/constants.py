"""Protocol constants of the daemon (docs/protocol.md §2–§4, §6, §12).

Every wire value is jmcore's (:mod:`jmcore.constants`, the one table shared with the plugin);
this module gives them the names the daemon's code uses and adds what only the daemon needs
(its receive limits, the IRC channel naming).
"""
from __future__ import annotations

from jmcore import constants as _jc

JM_VERSION = _jc.JM_VERSION
JOINMARKET_NICK_HEADER = _jc.JOINMARKET_NICK_HEADER
NICK_HASH_LENGTH = _jc.NICK_HASH_LENGTH
NICK_MAX_ENCODED = _jc.NICK_MAX_ENCODED
NICK_LENGTH = _jc.NICK_LENGTH                          # "J5" + 14 chars
COMMAND_PREFIX = _jc.COMMAND_PREFIX
DEFAULT_DAEMON_PORT = _jc.DEFAULT_DAEMON_PORT

OFFER_TYPES = _jc.OFFER_TYPES
REL_OFFER_TYPES = _jc.REL_OFFER_TYPES
ABS_OFFER_TYPES = _jc.ABS_OFFER_TYPES
FIDELITY_BOND_CMD = _jc.CMD_TBOND
COMMITMENT_BROADCAST_CMD = _jc.CMD_HP2
COMMITMENT_PREFIXES = (_jc.COMMITMENT_TYPE_PODLE,)

ENCRYPTED_COMMANDS = _jc.ENCRYPTED_COMMANDS
ALL_PRIVATE_COMMANDS = _jc.PRIVATE_COMMANDS | {_jc.CMD_ORDERBOOK}
"""What a private message may carry: jmcore's private commands, and ``!orderbook`` (a taker
may also ask one maker directly, as the reference does)."""
PLAINTEXT_COMMANDS = ALL_PRIVATE_COMMANDS - ENCRYPTED_COMMANDS
ORDER_KEYS = ("counterparty", "oid", "ordertype", "minsize", "maxsize", "txfee", "cjfee")

ONION_HOSTID = _jc.ONION_HOSTID
ONION_VIRTUAL_PORT = _jc.ONION_SERVING_PORT
NOT_SERVING_ONION = _jc.NOT_SERVING_ONION
APP_NAME = _jc.APP_NAME

# onion wire types (§3.2); only these may appear on the wire in our code
ONION_PRIVMSG = _jc.ONION_TYPE_PRIVMSG
ONION_PUBMSG = _jc.ONION_TYPE_PUBMSG
ONION_PEERLIST = _jc.ONION_TYPE_PEERLIST
ONION_GETPEERLIST = _jc.ONION_TYPE_GETPEERLIST
ONION_HANDSHAKE = _jc.ONION_TYPE_HANDSHAKE
ONION_DN_HANDSHAKE = _jc.ONION_TYPE_DN_HANDSHAKE
ONION_WIRE_TYPES = frozenset({ONION_PRIVMSG, ONION_PUBMSG, ONION_PEERLIST, ONION_GETPEERLIST,
                              ONION_HANDSHAKE, ONION_DN_HANDSHAKE})

# limits (docs/protocol.md §2, §3.1, §13)
MAX_PRIVMSG_LEN = _jc.IRC_MAX_LINE_LENGTH     # IRC line incl. "PRIVMSG nick :"
MAX_ONION_LINE = 65536                 # bytes per onion JSON line we accept (NG directory limit)
MAX_MESSAGE_LEN = 65536                # a reassembled JM message (IRC chunks)
MAX_OUR_LINE = _jc.ONION_MAX_LINE_LENGTH       # bytes of any onion line we send, and of any JM
                                       # message we send on any channel (Ref disconnects longer
                                       # lines, §3.1)
SIGNATURE_OVERHEAD = 1 + 66 + 1 + 100  # " <pubkey hex> <b64 DER sig>" appended by the client
MAX_SEEN_PER_DIRECTORY = 50000         # nicks remembered as reachable through one directory
MAX_TRACKED_NICKS = 50000              # nicks remembered per channel by the message layer
MAX_SATS = _jc.MAX_SATOSHIS
JM_DUST = _jc.DUST_THRESHOLD

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
