"""The client <-> daemon AMP command schema (JoinMarket 0.9.12 ``jmbase/commands.py``).

Data only.  Each of the 50 commands of the reference is written out below with
its wire name, its arguments (name and AMP argument type, *in the reference's
order*), its response, its error codes, its direction and its group.

Invariants (pinned by ``tests/unit/test_jmcore_commands.py`` against
``tests/vectors/amp_commands.json``):

* ``COMMANDS`` holds exactly the 50 reference commands (26 coinjoin, 11 SNICKER,
  13 BIP78), keyed by name; the name is also the ``_command`` value on the wire.
* argument and response names are also the AMP box keys (ASCII, <= 255 bytes);
  every response is ``accepted: Boolean``.
* ``errors`` maps the reference exception class name to the wire ``_error_code``
  (only ``JMInit`` has one: ``DaemonNotReady`` -> ``"daemon is not ready"``).
* argument types are one of :data:`ARG_TYPES`.

Both the Twisted daemon (``jmdaemon``) and the asyncio client (``jmcore.amp``)
are built from this one table.  Standard library only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from .errors import UnknownCommand

__all__ = [
    "Arg", "CommandSpec", "COMMANDS", "COINJOIN_COMMANDS", "SNICKER_COMMANDS",
    "BIP78_COMMANDS", "ARG_TYPES", "spec", "commands_for",
    "UNICODE", "INTEGER", "BOOLEAN", "STRING", "BIG_UNICODE", "JSON", "LIST_OF_UNICODE",
    "C2D", "D2C", "COINJOIN", "SNICKER", "BIP78", "EXTENSION", "EXTENSION_COMMANDS",
    "ALL_COMMANDS",
]

# argument type names (as in amp_commands.json)
UNICODE = "Unicode"
INTEGER = "Integer"
BOOLEAN = "Boolean"
STRING = "String"
BIG_UNICODE = "BigUnicode"
JSON = "JsonEncodable"
LIST_OF_UNICODE = "ListOf(Unicode)"
ARG_TYPES: frozenset[str] = frozenset(
    {UNICODE, INTEGER, BOOLEAN, STRING, BIG_UNICODE, JSON, LIST_OF_UNICODE})

C2D = "client->daemon"
D2C = "daemon->client"
COINJOIN = "coinjoin"
SNICKER = "SNICKER"
BIP78 = "BIP78"
EXTENSION = "extension"


@dataclass(frozen=True)
class Arg:
    """One AMP argument: its box key ``name`` and its AMP type name ``type``."""

    name: str
    type: str

    def __post_init__(self) -> None:
        if self.type not in ARG_TYPES:
            raise ValueError(f"unknown AMP argument type {self.type!r}")
        if not self.name or len(self.name.encode("ascii")) > 255:
            raise ValueError(f"bad AMP argument name {self.name!r}")

    @property
    def wire_name(self) -> bytes:
        """The key of this argument in an AMP box."""
        return self.name.encode("ascii")


@dataclass(frozen=True)
class CommandSpec:
    """Schema of one AMP command.

    ``errors`` is a read-only mapping (reference exception class name -> wire
    error code); it is excluded from hashing so specs stay hashable.
    """

    name: str
    arguments: tuple[Arg, ...]
    response: tuple[Arg, ...]
    errors: Mapping[str, str] = field(default_factory=dict, hash=False)
    direction: str = C2D
    group: str = COINJOIN

    def __post_init__(self) -> None:
        object.__setattr__(self, "errors", MappingProxyType(dict(self.errors)))
        object.__setattr__(self, "arguments", tuple(self.arguments))
        object.__setattr__(self, "response", tuple(self.response))
        if self.direction not in (C2D, D2C):
            raise ValueError(f"bad direction {self.direction!r}")
        if self.group not in (COINJOIN, SNICKER, BIP78, EXTENSION):
            raise ValueError(f"bad group {self.group!r}")

    @property
    def wire_name(self) -> bytes:
        """The ``_command`` value of this command on the wire."""
        return self.name.encode("ascii")

    @property
    def argument_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.arguments)

    def error_name(self, code: str) -> str | None:
        """The reference exception name for a wire error ``code``, if any."""
        for name, c in self.errors.items():
            if c == code:
                return name
        return None


_ACCEPTED: tuple[Arg, ...] = (Arg("accepted", BOOLEAN),)


def _cmd(name: str, direction: str, group: str, arguments: tuple[Arg, ...],
         errors: dict[str, str]) -> CommandSpec:
    return CommandSpec(name=name, arguments=arguments, response=_ACCEPTED,
                       errors=errors, direction=direction, group=group)


_TABLE: tuple[CommandSpec, ...] = (
    _cmd('JMInit', C2D, COINJOIN, (
        Arg('bcsource', UNICODE),
        Arg('network', UNICODE),
        Arg('chan_configs', JSON),
        Arg('minmakers', INTEGER),
        Arg('maker_timeout_sec', INTEGER),
        Arg('dust_threshold', INTEGER),
        Arg('blacklist_location', UNICODE),
    ), {'DaemonNotReady': 'daemon is not ready'}),
    _cmd('JMStartMC', C2D, COINJOIN, (
        Arg('nick', UNICODE),
    ), {}),
    _cmd('JMSetup', C2D, COINJOIN, (
        Arg('role', UNICODE),
        Arg('initdata', JSON),
        Arg('use_fidelity_bond', BOOLEAN),
    ), {}),
    _cmd('JMMsgSignature', C2D, COINJOIN, (
        Arg('nick', UNICODE),
        Arg('cmd', UNICODE),
        Arg('msg_to_return', UNICODE),
        Arg('hostid', UNICODE),
    ), {}),
    _cmd('JMMsgSignatureVerify', C2D, COINJOIN, (
        Arg('verif_result', BOOLEAN),
        Arg('nick', UNICODE),
        Arg('fullmsg', UNICODE),
        Arg('hostid', UNICODE),
    ), {}),
    _cmd('JMShutdown', C2D, COINJOIN, (), {}),
    _cmd('JMRequestOffers', C2D, COINJOIN, (), {}),
    _cmd('JMFill', C2D, COINJOIN, (
        Arg('amount', INTEGER),
        Arg('commitment', UNICODE),
        Arg('revelation', UNICODE),
        Arg('filled_offers', JSON),
    ), {}),
    _cmd('JMMakeTx', C2D, COINJOIN, (
        Arg('nick_list', LIST_OF_UNICODE),
        Arg('tx', STRING),
    ), {}),
    _cmd('JMPushTx', C2D, COINJOIN, (
        Arg('nick', UNICODE),
        Arg('tx', STRING),
    ), {}),
    _cmd('JMAnnounceOffers', C2D, COINJOIN, (
        Arg('to_announce', JSON),
        Arg('to_cancel', JSON),
        Arg('offerlist', JSON),
    ), {}),
    _cmd('JMFidelityBondProof', C2D, COINJOIN, (
        Arg('nick', UNICODE),
        Arg('proof', UNICODE),
    ), {}),
    _cmd('JMIOAuth', C2D, COINJOIN, (
        Arg('nick', UNICODE),
        Arg('utxolist', JSON),
        Arg('pubkey', UNICODE),
        Arg('cjaddr', UNICODE),
        Arg('changeaddr', UNICODE),
        Arg('pubkeysig', UNICODE),
    ), {}),
    _cmd('JMTXSigs', C2D, COINJOIN, (
        Arg('nick', UNICODE),
        Arg('sigs', LIST_OF_UNICODE),
    ), {}),
    _cmd('JMInitProto', D2C, COINJOIN, (
        Arg('nick_hash_length', INTEGER),
        Arg('nick_max_encoded', INTEGER),
        Arg('joinmarket_nick_header', UNICODE),
        Arg('joinmarket_version', INTEGER),
    ), {}),
    _cmd('JMUp', D2C, COINJOIN, (), {}),
    _cmd('JMSetupDone', D2C, COINJOIN, (), {}),
    _cmd('JMRequestMsgSig', D2C, COINJOIN, (
        Arg('nick', UNICODE),
        Arg('cmd', UNICODE),
        Arg('msg', UNICODE),
        Arg('msg_to_be_signed', UNICODE),
        Arg('hostid', UNICODE),
    ), {}),
    _cmd('JMRequestMsgSigVerify', D2C, COINJOIN, (
        Arg('msg', UNICODE),
        Arg('fullmsg', UNICODE),
        Arg('sig', UNICODE),
        Arg('pubkey', UNICODE),
        Arg('nick', UNICODE),
        Arg('hashlen', INTEGER),
        Arg('max_encoded', INTEGER),
        Arg('hostid', UNICODE),
    ), {}),
    _cmd('JMOffers', D2C, COINJOIN, (
        Arg('orderbook', BIG_UNICODE),
        Arg('fidelitybonds', BIG_UNICODE),
    ), {}),
    _cmd('JMFillResponse', D2C, COINJOIN, (
        Arg('success', BOOLEAN),
        Arg('ioauth_data', JSON),
    ), {}),
    _cmd('JMSigReceived', D2C, COINJOIN, (
        Arg('nick', UNICODE),
        Arg('sig', UNICODE),
    ), {}),
    _cmd('JMFidelityBondProofRequest', D2C, COINJOIN, (
        Arg('takernick', UNICODE),
        Arg('makernick', UNICODE),
    ), {}),
    _cmd('JMAuthReceived', D2C, COINJOIN, (
        Arg('nick', UNICODE),
        Arg('offer', JSON),
        Arg('commitment', UNICODE),
        Arg('revelation', JSON),
        Arg('amount', INTEGER),
        Arg('kphex', UNICODE),
    ), {}),
    _cmd('JMTXReceived', D2C, COINJOIN, (
        Arg('nick', UNICODE),
        Arg('tx', STRING),
        Arg('offer', JSON),
    ), {}),
    _cmd('JMTXBroadcast', D2C, COINJOIN, (
        Arg('tx', STRING),
    ), {}),
    _cmd('SNICKERReceiverInit', C2D, SNICKER, (
        Arg('netconfig', JSON),
    ), {}),
    _cmd('SNICKERProposerInit', C2D, SNICKER, (
        Arg('netconfig', JSON),
    ), {}),
    _cmd('SNICKERReceiverUp', D2C, SNICKER, (), {}),
    _cmd('SNICKERProposerUp', D2C, SNICKER, (), {}),
    _cmd('SNICKERReceiverGetProposals', C2D, SNICKER, (), {}),
    _cmd('SNICKERReceiverProposals', D2C, SNICKER, (
        Arg('proposals', BIG_UNICODE),
        Arg('server', UNICODE),
    ), {}),
    _cmd('SNICKERProposerPostProposals', C2D, SNICKER, (
        Arg('proposals', BIG_UNICODE),
        Arg('server', UNICODE),
    ), {}),
    _cmd('SNICKERProposalsServerResponse', D2C, SNICKER, (
        Arg('response', UNICODE),
        Arg('server', UNICODE),
    ), {}),
    _cmd('SNICKERServerError', D2C, SNICKER, (
        Arg('server', UNICODE),
        Arg('errorcode', INTEGER),
    ), {}),
    _cmd('SNICKERRequestPowTarget', C2D, SNICKER, (
        Arg('server', UNICODE),
    ), {}),
    _cmd('SNICKERReceivePowTarget', D2C, SNICKER, (
        Arg('server', UNICODE),
        Arg('targetbits', INTEGER),
    ), {}),
    _cmd('BIP78SenderInit', C2D, BIP78, (
        Arg('netconfig', JSON),
    ), {}),
    _cmd('BIP78SenderUp', D2C, BIP78, (), {}),
    _cmd('BIP78SenderOriginalPSBT', C2D, BIP78, (
        Arg('body', BIG_UNICODE),
        Arg('params', JSON),
    ), {}),
    _cmd('BIP78SenderReceiveProposal', D2C, BIP78, (
        Arg('psbt', BIG_UNICODE),
    ), {}),
    _cmd('BIP78SenderReceiveError', D2C, BIP78, (
        Arg('errormsg', UNICODE),
        Arg('errorcode', INTEGER),
    ), {}),
    _cmd('BIP78ReceiverInit', C2D, BIP78, (
        Arg('netconfig', JSON),
    ), {}),
    _cmd('BIP78ReceiverUp', D2C, BIP78, (
        Arg('hostname', UNICODE),
    ), {}),
    _cmd('BIP78ReceiverOriginalPSBT', D2C, BIP78, (
        Arg('body', BIG_UNICODE),
        Arg('params', JSON),
    ), {}),
    _cmd('BIP78ReceiverSendProposal', C2D, BIP78, (
        Arg('psbt', BIG_UNICODE),
    ), {}),
    _cmd('BIP78ReceiverSendError', C2D, BIP78, (
        Arg('errormsg', UNICODE),
        Arg('errorcode', UNICODE),
    ), {}),
    _cmd('BIP78ReceiverHiddenServiceShutdown', D2C, BIP78, (), {}),
    _cmd('BIP78ReceiverOnionSetupFailed', D2C, BIP78, (
        Arg('reason', UNICODE),
    ), {}),
    _cmd('BIP78InfoMsg', D2C, BIP78, (
        Arg('infomsg', UNICODE),
    ), {}),)

COMMANDS: dict[str, CommandSpec] = {c.name: c for c in _TABLE}
"""All 50 commands by name, in schema order.  Treat as read-only."""
COINJOIN_COMMANDS: tuple[str, ...] = tuple(c.name for c in _TABLE if c.group == COINJOIN)
SNICKER_COMMANDS: tuple[str, ...] = tuple(c.name for c in _TABLE if c.group == SNICKER)
BIP78_COMMANDS: tuple[str, ...] = tuple(c.name for c in _TABLE if c.group == BIP78)


# ---- extensions (ours; not in the reference) ---------------------------------------------------
# Client->daemon commands a reference joinmarketd does not know: it answers them with a clean
# AMP error ("Unhandled Command"), and our client then carries on without them. A reference client
# never sends them, so it sees exactly what a reference daemon would do: the daemon never sends a
# command a reference client does not know, nor one it did not ask for. Documented in
# docs/amp-extensions.md.
_EXTENSIONS: tuple[CommandSpec, ...] = (
    CommandSpec(name="EJMChannelStatus", arguments=(),
                response=(Arg("accepted", BOOLEAN), Arg("status", JSON)),
                direction=C2D, group=EXTENSION),
    # the link authentication (jmcore.linkauth, docs/daemon-auth.md): unlike the questions
    # above, a daemon that does not know these is refused by our client
    CommandSpec(name="EJMLinkAuthHello",
                arguments=(Arg("version", INTEGER), Arg("client_nonce", UNICODE)),
                response=(Arg("accepted", BOOLEAN), Arg("version", INTEGER),
                          Arg("daemon_nonce", UNICODE), Arg("daemon_proof", UNICODE)),
                direction=C2D, group=EXTENSION),
    CommandSpec(name="EJMLinkAuthProof", arguments=(Arg("client_proof", UNICODE),),
                response=(Arg("accepted", BOOLEAN),), direction=C2D, group=EXTENSION),
    # taker: push JMOffers to this client whenever the orderbook changes, until JMFill or
    # JMStartMC (instead of the client polling JMRequestOffers)
    CommandSpec(name="EJMFollowOffers", arguments=(),
                response=(Arg("accepted", BOOLEAN),), direction=C2D, group=EXTENSION),
    # maker: this client refuses the taker's !auth (or !tx): tell the taker with !error and end
    # the session with it, so the taker need not wait out its timeout
    CommandSpec(name="EJMRefuse", arguments=(Arg("nick", UNICODE), Arg("reason", UNICODE)),
                response=(Arg("accepted", BOOLEAN),), direction=C2D, group=EXTENSION),
    # taker, after JMFillResponse: the makers of the last JMFill that refused it with !error,
    # nick -> their reason (the taker reports them as refused rather than silent)
    CommandSpec(name="EJMFillRefusals", arguments=(),
                response=(Arg("accepted", BOOLEAN), Arg("refusals", JSON)),
                direction=C2D, group=EXTENSION),
)
EXTENSION_COMMANDS: dict[str, CommandSpec] = {c.name: c for c in _EXTENSIONS}
"""Our extension commands by name (not part of :data:`COMMANDS`)."""
ALL_COMMANDS: dict[str, CommandSpec] = {**COMMANDS, **EXTENSION_COMMANDS}
"""The 50 reference commands plus our extensions (what our client and daemon understand)."""


def spec(name: str) -> CommandSpec:
    """The schema of command ``name``; raises :class:`UnknownCommand` (a
    ``KeyError``) for a name that is not one of the 50 commands."""
    try:
        return COMMANDS[name]
    except (KeyError, TypeError):
        raise UnknownCommand(f"unknown AMP command {name!r}") from None


def commands_for(direction: str, group: str | None = None) -> tuple[str, ...]:
    """Names of the commands sent in ``direction`` (``C2D``/``D2C``),
    optionally restricted to one ``group``, in schema order."""
    return tuple(c.name for c in _TABLE
                 if c.direction == direction and (group is None or c.group == group))
