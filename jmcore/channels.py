"""Message channel configuration shared by the plugin and the daemon (standard library only).

Three layers:

* **Defaults** (:data:`DEFAULT_DIRECTORIES`): the onion directory nodes the two reference
  stacks ship — joinmarket-clientserver 0.9.12 (``jmclient/configure.py``) and joinmarket-ng
  0.37 (``jmcore/models.py``). mainnet = the union of both (7), signet = both signet sets (6),
  testnet/regtest = none (neither ships any). IRC is never a default: the only IRC pit left
  (hackint) is reference-only, so it is an opt-in preset (:data:`HACKINT_IRC`).
* **Typed channel configs** (:class:`OnionChannelConfig`, :class:`IRCChannelConfig`): what one
  ``JMInit`` ``chan_configs`` entry holds, in the reference's complete shape. The reference
  ``joinmarketd`` reads every key without a default (a missing ``btcnet`` is a ``KeyError``
  answered ``UNKNOWN: Unknown Error``), so :meth:`to_jminit` always writes every key the
  reference reads — IRC: ``host port channel usessl socks5 socks5_host socks5_port btcnet``;
  onion: ``type directory_nodes regtest_count socks5_host socks5_port tor_control_host
  tor_control_port onion_serving_host onion_serving_port hidden_service_dir serving passive
  btcnet section-name`` (+ ``tor_control_password``, which newer reference daemons read).
  Values have the reference's types (``usessl``/``socks5`` are the strings ``"true"``/``"false"``).
* **The user's choice** (:class:`ChannelSettings`): stored as JSON in the plugin setting
  ``plugins.joinmarket.channels``; directories follow the network's defaults with additions
  and removals, or replace them; IRC servers are opt-in; Tor's SOCKS/control ports may be
  pinned (else found automatically). :func:`build_chan_configs` turns it into complete configs.

Invariants: a channel configured over Tor only ever names Tor onion services as directories
(never a clearnet host); ``btcnet`` is the network name on the wire (regtest runs as
``testnet``, as in the reference); at most one onion channel.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Optional, Sequence

from .constants import IRC_CHANNEL_BASE, NETWORKS

__all__ = [
    "ChannelConfigError", "NoDirectoriesError", "NETWORKS", "wire_network", "network_for_wire",
    "irc_channel_name",
    "REFERENCE_MAINNET_DIRECTORIES", "NG_MAINNET_DIRECTORIES", "REFERENCE_SIGNET_DIRECTORIES",
    "NG_SIGNET_DIRECTORIES", "DEFAULT_DIRECTORIES", "default_directories",
    "DEFAULT_SOCKS_PORTS", "DEFAULT_CONTROL_PORTS", "TOR_BROWSER_SOCKS_PORT",
    "TorEndpoints", "OnionChannelConfig", "IRCChannelConfig", "IRCServer", "HACKINT_IRC",
    "ChannelSettings", "build_chan_configs", "complete_config", "complete_configs",
    "parse_location", "is_onion_host", "ONION_KEYS", "IRC_KEYS", "no_directories_message",
]


class ChannelConfigError(ValueError):
    """A channel setting the user (or a client) must fix; the message says how."""


class NoDirectoriesError(ChannelConfigError):
    """No directory node (and no IRC server) is configured for this network."""


DEFAULT_SOCKS_PORTS: tuple[int, ...] = (9050, 9150)
"""Where a Tor SOCKS proxy is looked for: the tor daemon, then Tor Browser."""
DEFAULT_CONTROL_PORTS: tuple[int, ...] = (9051, 9151)
TOR_BROWSER_SOCKS_PORT = 9150
MAX_DIRECTORIES = 32

# ---- defaults of the reference stacks (public facts; see the module docstring) ----------------
REFERENCE_MAINNET_DIRECTORIES: tuple[str, ...] = (
    "satoshi2vcg5e2ept7tjkzlkpomkobqmgtsjzegg6wipnoajadissead.onion:5222",
    "jmarketxf5wc4aldf3slm5u6726zsky52bqnfv6qyxe5hnafgly6yuyd.onion:5222",
    "coinjointovy3eq5fjygdwpkbcdx63d7vd4g32mw7y553uj3kjjzkiqd.onion:5222",
    "nakamotourflxwjnjpnrk7yc2nhkf6r62ed4gdfxmmn5f4saw5q5qoyd.onion:5222",
    "odpwaf67rs5226uabcamvypg3y4bngzmfk7255flcdodesqhsvkptaid.onion:5222",
)
NG_MAINNET_DIRECTORIES: tuple[str, ...] = REFERENCE_MAINNET_DIRECTORIES + (
    "jmrust7bgdbdl6skkvuzhqost4jkikrluj6alemspeifm5hvgqz2qaad.onion:5222",
    "nok55gjlqw6h76zi6gigukoztpx7xgo5r3w5csu362nys5yukzrxpgad.onion:5222",
)
REFERENCE_SIGNET_DIRECTORIES: tuple[str, ...] = (
    "rr6f6qtleiiwic45bby4zwmiwjrj3jsbmcvutwpqxjziaydjydkk5iad.onion:5222",
    "k74oyetjqgcamsyhlym2vgbjtvhcrbxr4iowd4nv4zk5sehw4v665jad.onion:5222",
    "y2ruswmdbsfl4hhwwiqz4m3sx6si5fr6l3pf62d4pms2b53wmagq3eqd.onion:5222",
)
NG_SIGNET_DIRECTORIES: tuple[str, ...] = (
    "signetvaxgd3ivj4tml4g6ed3samaa2rscre2gyeyohncmwk4fbesiqd.onion:5222",
    "u5oj5etqex3vh7jagljf3e2lo4awmmtcw3klbrlt2fonzyozpn5txrqd.onion:5222",
    "frqp4m6yveiagow73dplmnyv2abrqhte2grbhgw7hkbkhrv6zagrqbqd.onion:5222",
)


def _union(*lists: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for lst in lists:
        out += [x for x in lst if x not in out]
    return tuple(out)


DEFAULT_DIRECTORIES: Mapping[str, tuple[str, ...]] = {
    "mainnet": _union(REFERENCE_MAINNET_DIRECTORIES, NG_MAINNET_DIRECTORIES),
    "signet": _union(REFERENCE_SIGNET_DIRECTORIES, NG_SIGNET_DIRECTORIES),
    "testnet": (),
    "regtest": (),
}

_ONION_RE = re.compile(r"^[a-z2-7]{56}\.onion$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-]{1,253}$")


def normalize_network(network: str) -> str:
    """Electrum's/JoinMarket's network names to one of :data:`NETWORKS`."""
    n = str(network or "mainnet").strip().lower()
    if n in ("testnet3", "testnet4"):
        return "testnet"
    if n not in NETWORKS:
        raise ChannelConfigError(f"unknown bitcoin network {network!r} (want one of "
                                 f"{', '.join(NETWORKS)})")
    return n


def network_for_wire(network: str | None) -> str:
    """The network name announced on the wire (§12): regtest and every testnet run as
    ``testnet``; anything unknown is ``mainnet``. Never raises (the daemon applies it to what a
    client sends); :func:`wire_network` is the strict form for the user's settings."""
    n = (network or "mainnet").lower()
    if n in ("regtest", "testnet", "testnet3", "testnet4"):
        return "testnet"
    if n == "signet":
        return "signet"
    return "mainnet"


def wire_network(network: str) -> str:
    """The network name a channel config's ``btcnet`` carries: what the reference client
    sends and announces on the wire (regtest runs as ``testnet``). Raises
    :class:`ChannelConfigError` for an unknown network."""
    return network_for_wire(normalize_network(network))


def irc_channel_name(base: str, network: str | None) -> str:
    """``#base`` plus the network's suffix (``-test``, ``-sig``; none on mainnet), added once."""
    suffix = {"mainnet": "", "testnet": "-test", "signet": "-sig"}[network_for_wire(network)]
    base = base.lstrip("#")
    if suffix and base.endswith(suffix):
        suffix = ""
    return "#" + base + suffix


def default_directories(network: str) -> tuple[str, ...]:
    return DEFAULT_DIRECTORIES[normalize_network(network)]


def is_onion_host(host: str) -> bool:
    """A Tor v3 onion service name (56 base32 characters + ``.onion``)."""
    return bool(_ONION_RE.match(host))


def parse_location(location: str, *, tor: bool = True) -> tuple[str, int]:
    """``(host, port)`` of a directory location ``host:port``. Over Tor the host must be a v3
    onion (``…56 chars….onion``): a clearnet host is refused, never contacted. Raises
    :class:`ChannelConfigError` with a message for the user."""
    text = str(location).strip()
    host, sep, port = text.rpartition(":")
    host = host.lower() if host.endswith(".onion") or host.endswith(".ONION") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ChannelConfigError(f"directory {text!r} is not host:port (e.g. "
                                 f"{REFERENCE_MAINNET_DIRECTORIES[0]})")
    if tor and not is_onion_host(host):
        raise ChannelConfigError(
            f"directory {text!r} is not a Tor v3 onion address (56 characters + .onion): "
            f"directories are reached only through Tor, never over the clearnet")
    if not tor and not _HOST_RE.match(host):
        raise ChannelConfigError(f"directory {text!r} has a bad host name")
    return host, int(port)


def _location(location: str, *, tor: bool) -> str:
    host, port = parse_location(location, tor=tor)
    return f"{host}:{port}"


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes", "on")


def _port(value: Any, what: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ChannelConfigError(f"{what} must be a port number, not {value!r}") from None
    if not 0 <= n < 65536:
        raise ChannelConfigError(f"{what} must be a port number (0-65535), not {n}")
    return n


def _hostport(text: Any, what: str) -> tuple[str, int]:
    host, sep, port = str(text).strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ChannelConfigError(f"{what} must look like host:port (e.g. 127.0.0.1:9050), "
                                 f"not {text!r}")
    return host, int(port)


# ---- Tor endpoints ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TorEndpoints:
    """Where the daemon finds Tor: its SOCKS5 port (every .onion connection) and its control
    port (a maker publishing its onion service). ``source`` says how it was chosen (for the
    user: "setting", "electrum proxy", "found 127.0.0.1:9050", "default")."""

    socks5_host: str = "127.0.0.1"
    socks5_port: int = 9050
    tor_control_host: str = "127.0.0.1"
    tor_control_port: int = 9051
    tor_control_password: Optional[str] = None
    source: str = "default"

    @property
    def socks5(self) -> str:
        return f"{self.socks5_host}:{self.socks5_port}"

    @property
    def control(self) -> str:
        return f"{self.tor_control_host}:{self.tor_control_port}"


# ---- typed channel configs ----------------------------------------------------------------------
ONION_KEYS: tuple[str, ...] = (
    "type", "directory_nodes", "regtest_count", "socks5_host", "socks5_port", "tor_control_host",
    "tor_control_port", "onion_serving_host", "onion_serving_port", "hidden_service_dir",
    "serving", "passive", "btcnet", "section-name", "tor_control_password")
"""Every key of an onion channel config the reference daemon reads (and ours)."""
IRC_KEYS: tuple[str, ...] = ("host", "port", "channel", "usessl", "socks5", "socks5_host",
                             "socks5_port", "btcnet")
"""Every key of an IRC channel config the reference daemon reads (and ours)."""
_ONION_EXTENSIONS = ("welcome_timeout", "reconnect_base", "max_peers", "socks5_timeout")
_IRC_EXTENSIONS = ("line_rate", "password")


@dataclass(frozen=True)
class OnionChannelConfig:
    """One onion message channel: a list of directory nodes reached through Tor (or, in test
    mode, over plain TCP on 127.0.0.1 — the reference's ``regtest_count`` other than ``0,0``).

    ``serving``: publish our own onion service (a maker); a taker serves none and announces
    ``NOT-SERVING-ONION``. ``passive``: never open direct links (orderbook watcher).
    ``onion_serving_port`` 0 lets the daemon pick a free local port."""

    directory_nodes: tuple[str, ...]
    btcnet: str = "mainnet"
    tor: TorEndpoints = TorEndpoints()
    serving: bool = False
    passive: bool = False
    onion_serving_host: str = "127.0.0.1"
    onion_serving_port: int = 8080
    hidden_service_dir: str = ""
    regtest_count: str = "0,0"
    section_name: str = "MESSAGING:onion"
    extensions: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "btcnet", wire_network(self.btcnet))
        dns = tuple(_location(d, tor=not self.test_mode) for d in self.directory_nodes)
        if not dns:
            raise ChannelConfigError("an onion channel needs at least one directory node")
        if len(dns) > MAX_DIRECTORIES:
            raise ChannelConfigError(f"at most {MAX_DIRECTORIES} directory nodes")
        object.__setattr__(self, "directory_nodes", tuple(dict.fromkeys(dns)))
        object.__setattr__(self, "extensions", dict(self.extensions))

    @property
    def test_mode(self) -> bool:
        """Plain TCP instead of Tor (reference: ``regtest_count`` other than ``0,0``)."""
        return self.regtest_count.replace(" ", "") not in ("0,0", "", "None")

    def to_jminit(self) -> dict[str, Any]:
        """The complete ``chan_configs`` entry (every key in :data:`ONION_KEYS`)."""
        d: dict[str, Any] = {
            "type": "onion",
            "directory_nodes": ",".join(self.directory_nodes),
            "regtest_count": self.regtest_count,
            "socks5_host": self.tor.socks5_host,
            "socks5_port": self.tor.socks5_port,
            "tor_control_host": self.tor.tor_control_host,
            "tor_control_port": self.tor.tor_control_port,
            "onion_serving_host": self.onion_serving_host,
            "onion_serving_port": self.onion_serving_port,
            "hidden_service_dir": self.hidden_service_dir,
            "serving": self.serving,
            "passive": self.passive,
            "btcnet": self.btcnet,
            "section-name": self.section_name,
            "tor_control_password": self.tor.tor_control_password,
        }
        d.update({k: v for k, v in self.extensions.items() if k not in d})
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], network: str = "mainnet") -> "OnionChannelConfig":
        """From a (possibly partial) dict in the reference's shape; missing keys get the
        reference's defaults. ``test_mode: true`` (our older spelling) means regtest_count 1,1."""
        dns = d.get("directory_nodes", "")
        if isinstance(dns, str):
            dns = [x.strip() for x in dns.split(",") if x.strip()]
        regtest_count = str(d.get("regtest_count", "0,0"))
        if _bool(d.get("test_mode", False)) and regtest_count.replace(" ", "") in ("0,0", ""):
            regtest_count = "1,1"
        tor = TorEndpoints(
            socks5_host=str(d.get("socks5_host", "127.0.0.1")),
            socks5_port=_port(d.get("socks5_port", 9050), "socks5_port"),
            tor_control_host=str(d.get("tor_control_host", "127.0.0.1")),
            tor_control_port=_port(d.get("tor_control_port", 9051), "tor_control_port"),
            tor_control_password=(str(d["tor_control_password"])
                                  if d.get("tor_control_password") else None),
            source=str(d.get("tor_source", "config")))
        return cls(directory_nodes=tuple(dns), btcnet=str(d.get("btcnet", network)), tor=tor,
                   serving=_bool(d.get("serving", False)), passive=_bool(d.get("passive", False)),
                   onion_serving_host=str(d.get("onion_serving_host", "127.0.0.1")),
                   onion_serving_port=_port(d.get("onion_serving_port", 8080),
                                            "onion_serving_port"),
                   hidden_service_dir=str(d.get("hidden_service_dir") or ""),
                   regtest_count=regtest_count,
                   section_name=str(d.get("section-name", "MESSAGING:onion")),
                   extensions={k: d[k] for k in _ONION_EXTENSIONS if k in d})


@dataclass(frozen=True)
class IRCChannelConfig:
    """One IRC server (docs/protocol.md §2). ``socks5``: reach it through Tor's SOCKS port."""

    host: str
    port: int
    channel: str = IRC_CHANNEL_BASE
    usessl: bool = False
    socks5: bool = False
    socks5_host: str = "127.0.0.1"
    socks5_port: int = 9050
    btcnet: str = "mainnet"
    extensions: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "btcnet", wire_network(self.btcnet))
        if not self.host or not _HOST_RE.match(self.host):
            raise ChannelConfigError(f"IRC server host {self.host!r} is not a host name")
        if not 0 < int(self.port) < 65536:
            raise ChannelConfigError(f"IRC server port {self.port!r} is not a port number")
        if is_onion_host(self.host) and not self.socks5:
            raise ChannelConfigError(f"IRC server {self.host} is an onion: it needs socks5 (Tor)")
        object.__setattr__(self, "extensions", dict(self.extensions))

    def to_jminit(self) -> dict[str, Any]:
        """The complete ``chan_configs`` entry (every key in :data:`IRC_KEYS`)."""
        d: dict[str, Any] = {
            "host": self.host, "port": int(self.port), "channel": self.channel,
            "usessl": "true" if self.usessl else "false",
            "socks5": "true" if self.socks5 else "false",
            "socks5_host": self.socks5_host, "socks5_port": int(self.socks5_port),
            "btcnet": self.btcnet,
        }
        d.update({k: v for k, v in self.extensions.items() if k not in d})
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], network: str = "mainnet") -> "IRCChannelConfig":
        try:
            host, port = str(d["host"]), _port(d["port"], "IRC port")
        except KeyError as exc:
            raise ChannelConfigError(f"an IRC channel needs {exc.args[0]}") from None
        return cls(host=host, port=port, channel=str(d.get("channel", IRC_CHANNEL_BASE)),
                   usessl=_bool(d.get("usessl", False)), socks5=_bool(d.get("socks5", False)),
                   socks5_host=str(d.get("socks5_host", "127.0.0.1")),
                   socks5_port=_port(d.get("socks5_port", 9050), "socks5_port"),
                   btcnet=str(d.get("btcnet", network)),
                   extensions={k: d[k] for k in _IRC_EXTENSIONS if k in d})


def complete_config(d: Mapping[str, Any], network: str) -> dict[str, Any]:
    """A possibly partial channel dict completed to the reference's full shape (keeps every
    value given; fills the rest). Raises :class:`ChannelConfigError`."""
    if not isinstance(d, Mapping):
        raise ChannelConfigError("each channel config must be an object")
    ctype = str(d.get("type", "irc")).lower()
    if ctype == "onion":
        return OnionChannelConfig.from_dict(d, network).to_jminit()
    if ctype == "irc":
        return IRCChannelConfig.from_dict(d, network).to_jminit()
    raise ChannelConfigError(f"unknown channel type {ctype!r} (onion or irc)")


def complete_configs(configs: Iterable[Mapping[str, Any]], network: str) -> list[dict[str, Any]]:
    out = [complete_config(c, network) for c in configs]
    if not out:
        raise NoDirectoriesError(no_directories_message(network))
    if sum(1 for c in out if c.get("type") == "onion") > 1:
        raise ChannelConfigError("at most one onion channel (it may list many directories)")
    return out


# ---- the user's choice --------------------------------------------------------------------------
@dataclass(frozen=True)
class IRCServer:
    """An IRC server the user opted into."""

    host: str
    port: int
    channel: str = IRC_CHANNEL_BASE
    usessl: bool = False
    tor: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "channel": self.channel,
                "usessl": self.usessl, "tor": self.tor}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "IRCServer":
        if not isinstance(d, Mapping):
            raise ChannelConfigError("an IRC server must be an object with host and port")
        try:
            return cls(host=str(d["host"]), port=_port(d["port"], "IRC port"),
                       channel=str(d.get("channel", IRC_CHANNEL_BASE)),
                       usessl=_bool(d.get("usessl", False)),
                       tor=_bool(d.get("tor", d.get("socks5", True))))
        except KeyError as exc:
            raise ChannelConfigError(f"an IRC server needs {exc.args[0]}") from None


HACKINT_IRC = IRCServer(host="ncwkrwxpq2ikcngxq3dy2xctuheniggtqeibvgofixpzvrwpa77tozqd.onion",
                        port=6667, channel=IRC_CHANNEL_BASE, usessl=False, tor=True)
"""The reference's IRC pit (hackint, over Tor). Reference makers only; opt-in."""


def no_directories_message(network: str) -> str:
    net = normalize_network(network)
    flag = {"mainnet": "", "testnet": " --testnet", "signet": " --signet",
            "regtest": " --regtest"}[net]
    return (f"no JoinMarket directory node is configured for {net}: neither reference "
            f"implementation ships defaults for it. Add the directory nodes of the {net} network "
            f"you want to join: in the JoinMarket tab under Settings, or with "
            f"`electrum{flag} setconfig plugins.joinmarket.channels "
            f"'{{\"directories\": [\"<56 characters>.onion:5222\"]}}'`, or an IRC server "
            f"with '{{\"irc\": [{{\"host\": \"irc.example.org\", \"port\": 6697, "
            f"\"usessl\": true}}]}}'. A local test network's directory in plain-TCP test mode: "
            f"'{{\"test_mode\": true, \"directories\": [\"127.0.0.1:5222\"]}}'.")


@dataclass(frozen=True)
class ChannelSettings:
    """What the user chose; JSON in ``plugins.joinmarket.channels`` (:meth:`to_setting`).

    * ``directories`` None: the network's defaults, plus ``add_directories`` minus
      ``remove_directories``; a tuple: exactly those (replaces the defaults).
    * ``onion`` False: no onion channel at all (IRC only).
    * ``irc``: opt-in IRC servers (none by default).
    * ``socks5`` / ``tor_control`` ``"host:port"``: pin Tor's ports; None: found automatically
      (Electrum's own proxy when it is Tor, else 127.0.0.1:9050, else 127.0.0.1:9150).
    * ``test_mode``: directories are ``host:port`` reached over plain TCP (local test networks
      only, never Tor).
    * ``raw``: channel dicts from an older setting (a JSON list), completed as given.

    The editor API returns new objects: :meth:`with_directory_added`,
    :meth:`with_directory_removed`, :meth:`with_directories`, :meth:`with_default_directories`,
    :meth:`with_irc_server`, :meth:`without_irc_server`.
    """

    directories: Optional[tuple[str, ...]] = None
    add_directories: tuple[str, ...] = ()
    remove_directories: tuple[str, ...] = ()
    onion: bool = True
    irc: tuple[IRCServer, ...] = ()
    socks5: Optional[str] = None
    tor_control: Optional[str] = None
    tor_control_password: Optional[str] = None
    test_mode: bool = False
    raw: Optional[tuple[Mapping[str, Any], ...]] = None

    # -- (de)serialisation
    @classmethod
    def from_setting(cls, value: Any) -> "ChannelSettings":
        """From the stored setting: None/"" (defaults), a JSON object/str, or an older JSON
        list of raw channel configs. Raises :class:`ChannelConfigError` saying what is wrong."""
        if value is None or value == "" or value == {}:
            return cls()
        if isinstance(value, (bytes, str)):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ChannelConfigError(f"plugins.joinmarket.channels is not valid JSON: "
                                         f"{exc}") from None
        if isinstance(value, list):
            if not all(isinstance(c, Mapping) for c in value):
                raise ChannelConfigError("plugins.joinmarket.channels: a list must hold channel "
                                         "objects")
            return cls(raw=tuple(dict(c) for c in value)) if value else cls()
        if not isinstance(value, Mapping):
            raise ChannelConfigError("plugins.joinmarket.channels must be a JSON object, e.g. "
                                     '{"directories": ["<56 characters>.onion:5222"]}')
        known = {"directories", "add_directories", "remove_directories", "onion", "irc",
                 "socks5", "tor_control", "tor_control_password", "test_mode"}
        unknown = set(value) - known
        if unknown:
            raise ChannelConfigError(f"plugins.joinmarket.channels: unknown key(s) "
                                     f"{', '.join(sorted(unknown))} (known: "
                                     f"{', '.join(sorted(known))})")
        test_mode = _bool(value.get("test_mode", False))

        def locs(key: str) -> tuple[str, ...]:
            v = value.get(key)
            if v is None:
                return ()
            if isinstance(v, str):
                v = [x for x in v.split(",") if x.strip()]
            if not isinstance(v, list):
                raise ChannelConfigError(f"plugins.joinmarket.channels: {key} must be a list of "
                                         "host:port strings")
            return tuple(_location(x, tor=not test_mode) for x in v)
        irc_raw = value.get("irc") or []
        if not isinstance(irc_raw, list):
            raise ChannelConfigError("plugins.joinmarket.channels: irc must be a list of servers")
        for key in ("socks5", "tor_control"):
            if value.get(key):
                _hostport(value[key], key)
        return cls(directories=(locs("directories") if value.get("directories") is not None
                                else None),
                   add_directories=locs("add_directories"),
                   remove_directories=locs("remove_directories"),
                   onion=_bool(value.get("onion", True)),
                   irc=tuple(IRCServer.from_dict(s) for s in irc_raw),
                   socks5=str(value["socks5"]) if value.get("socks5") else None,
                   tor_control=str(value["tor_control"]) if value.get("tor_control") else None,
                   tor_control_password=(str(value["tor_control_password"])
                                         if value.get("tor_control_password") else None),
                   test_mode=test_mode)

    def to_setting(self) -> Optional[dict[str, Any]]:
        """JSON-able value for the setting; None when everything is at its default."""
        if self.raw is not None:
            raise ChannelConfigError("an older channel list cannot be edited; reset it first")
        out: dict[str, Any] = {}
        if self.directories is not None:
            out["directories"] = list(self.directories)
        if self.add_directories:
            out["add_directories"] = list(self.add_directories)
        if self.remove_directories:
            out["remove_directories"] = list(self.remove_directories)
        if not self.onion:
            out["onion"] = False
        if self.irc:
            out["irc"] = [s.to_dict() for s in self.irc]
        for key in ("socks5", "tor_control", "tor_control_password"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.test_mode:
            out["test_mode"] = True
        return out or None

    # -- what it means
    def effective_directories(self, network: str) -> list[tuple[str, str]]:
        """``[(location, source)]`` in use on ``network``; source is ``default``, ``added`` or
        ``configured`` (a replaced list)."""
        if not self.onion:
            return []
        if self.directories is not None:
            return [(d, "configured") for d in self.directories]
        removed = set(self.remove_directories)
        out = [(d, "default") for d in default_directories(network) if d not in removed]
        out += [(d, "added") for d in self.add_directories
                if d not in removed and d not in {x for x, _ in out}]
        return out

    def needs_tor(self, network: str) -> bool:
        if self.raw is not None:
            return any((str(c.get("type", "irc")).lower() == "onion"
                        and not OnionChannelConfig.from_dict(c, network).test_mode)
                       or (str(c.get("type", "irc")).lower() == "irc"
                           and _bool(c.get("socks5", False))) for c in self.raw)
        onion = bool(self.effective_directories(network)) and not self.test_mode
        return onion or any(s.tor for s in self.irc)

    def pinned_tor(self) -> Optional[TorEndpoints]:
        """The Tor endpoints the user pinned, or None (find automatically)."""
        if not self.socks5:
            return None
        sh, sp = _hostport(self.socks5, "socks5")
        if self.tor_control:
            ch, cp = _hostport(self.tor_control, "tor_control")
        else:
            ch, cp = sh, (9151 if sp == TOR_BROWSER_SOCKS_PORT else 9051)
        return TorEndpoints(sh, sp, ch, cp, self.tor_control_password, source="setting")

    # -- editor API
    def _edited(self, **kw: Any) -> "ChannelSettings":
        if self.raw is not None:
            base = ChannelSettings()
            return replace(base, **kw)
        return replace(self, **kw)

    def with_directory_added(self, location: str) -> "ChannelSettings":
        loc = _location(location, tor=not self.test_mode)
        if self.directories is not None:
            return self._edited(directories=tuple(dict.fromkeys(self.directories + (loc,))))
        return self._edited(add_directories=tuple(dict.fromkeys(self.add_directories + (loc,))),
                            remove_directories=tuple(d for d in self.remove_directories
                                                     if d != loc))

    def with_directory_removed(self, location: str) -> "ChannelSettings":
        loc = _location(location, tor=not self.test_mode)
        if self.directories is not None:
            return self._edited(directories=tuple(d for d in self.directories if d != loc))
        return self._edited(add_directories=tuple(d for d in self.add_directories if d != loc),
                            remove_directories=tuple(dict.fromkeys(self.remove_directories
                                                                   + (loc,))))

    def with_directories(self, locations: Iterable[str]) -> "ChannelSettings":
        """Replace the defaults with exactly these."""
        locs = tuple(dict.fromkeys(_location(x, tor=not self.test_mode) for x in locations))
        return self._edited(directories=locs, add_directories=(), remove_directories=())

    def with_default_directories(self) -> "ChannelSettings":
        return self._edited(directories=None, add_directories=(), remove_directories=())

    def with_irc_server(self, server: IRCServer) -> "ChannelSettings":
        rest = tuple(s for s in self.irc if (s.host, s.port) != (server.host, server.port))
        return self._edited(irc=rest + (server,))

    def without_irc_server(self, host: str, port: int) -> "ChannelSettings":
        return self._edited(irc=tuple(s for s in self.irc if (s.host, s.port) != (host, port)))


def build_chan_configs(settings: ChannelSettings, network: str, *, role: str = "TAKER",
                       tor: Optional[TorEndpoints] = None,
                       onion_serving_port: int = 8080) -> list[dict[str, Any]]:
    """Complete ``JMInit`` channel configs for ``role`` (``TAKER``, ``MAKER`` or ``PASSIVE``).

    A maker serves an onion (``serving``), a taker does not; ``PASSIVE`` opens no direct links.
    ``onion_serving_port`` is the reference's default 8080 (our daemon moves to a free port if
    it is taken; the onion's virtual port stays 5222).
    Raises :class:`NoDirectoriesError` when nothing is configured for the network (testnet and
    regtest have no defaults) with a message saying what to set and how."""
    net = normalize_network(network)
    tor = tor or settings.pinned_tor() or TorEndpoints()
    if settings.raw is not None:
        out = []
        for c in settings.raw:
            c = dict(c)
            if str(c.get("type", "irc")).lower() == "onion":
                c.setdefault("serving", role == "MAKER")
                c.setdefault("passive", role == "PASSIVE")
                for k in ("socks5_host", "socks5_port", "tor_control_host", "tor_control_port"):
                    c.setdefault(k, getattr(tor, k))
            out.append(c)
        return complete_configs(out, net)
    configs: list[dict[str, Any]] = []
    for s in settings.irc:
        configs.append(IRCChannelConfig(
            host=s.host, port=s.port, channel=s.channel, usessl=s.usessl, socks5=s.tor,
            socks5_host=tor.socks5_host, socks5_port=tor.socks5_port, btcnet=net).to_jminit())
    dirs = [d for d, _ in settings.effective_directories(net)]
    if dirs:
        configs.append(OnionChannelConfig(
            directory_nodes=tuple(dirs), btcnet=net, tor=tor, serving=(role == "MAKER"),
            passive=(role == "PASSIVE"), onion_serving_port=onion_serving_port,
            regtest_count="1,1" if settings.test_mode else "0,0").to_jminit())
    if not configs:
        raise NoDirectoriesError(no_directories_message(net))
    return configs
