"""Is Tor there? A local, network-free check of a Tor SOCKS port (asyncio), and the messages a
user sees when Tor is missing or refuses (shared by the plugin and the daemon). Standard
library only.

The check sends Tor's RESOLVE extension for the IP literal ``0.0.0.0`` — tor answers it itself
without building a circuit, and only tor answers it that way — so it tells a Tor SOCKS port
from a closed port and from some other proxy, and nothing leaves the machine.
"""
from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import Iterable, Optional

from .aio import wait_for
from .socks5 import TOR_PROBE_REPLY, TOR_PROBE_REQUEST

__all__ = ["TorProbe", "ProbeResult", "probe_tor_socks", "find_tor_socks", "tor_missing_message",
           "not_tor_message", "control_port_message", "control_auth_message",
           "INSTALL_HINT"]


class ProbeResult(str, enum.Enum):
    TOR = "tor"              # a Tor SOCKS port
    NOT_TOR = "not-tor"      # something answers, but not as Tor
    CLOSED = "closed"        # connection refused / nothing listens
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class TorProbe:
    host: str
    port: int
    result: ProbeResult
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.result == ProbeResult.TOR

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


async def probe_tor_socks(host: str, port: int, timeout: float = 5.0) -> TorProbe:
    """Probe one address; never raises."""
    writer = None
    try:
        reader, writer = await wait_for(asyncio.open_connection(host, port), timeout)
        writer.write(TOR_PROBE_REQUEST)
        await writer.drain()
        data = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(data) < len(TOR_PROBE_REPLY):
            chunk = await wait_for(reader.read(64), max(0.01, deadline - loop.time()))
            if not chunk:
                break
            data += chunk
        if data[:len(TOR_PROBE_REPLY)] == TOR_PROBE_REPLY:
            return TorProbe(host, port, ProbeResult.TOR)
        return TorProbe(host, port, ProbeResult.NOT_TOR, f"answered {data[:12]!r}")
    except asyncio.TimeoutError:
        return TorProbe(host, port, ProbeResult.TIMEOUT, f"no answer within {timeout:.0f}s")
    except OSError as exc:
        return TorProbe(host, port, ProbeResult.CLOSED, exc.strerror or str(exc))
    finally:
        if writer is not None:
            writer.close()


async def find_tor_socks(candidates: Iterable[tuple[str, int]], timeout: float = 5.0
                         ) -> tuple[Optional[TorProbe], list[TorProbe]]:
    """The first candidate that is a Tor SOCKS port, and every probe made."""
    tried: list[TorProbe] = []
    for host, port in candidates:
        p = await probe_tor_socks(host, port, timeout)
        tried.append(p)
        if p.ok:
            return p, tried
    return None, tried


INSTALL_HINT = ("Install and start Tor: Debian/Ubuntu: `sudo apt install tor`; Fedora: "
                "`sudo dnf install tor && sudo systemctl start tor`; macOS: `brew install tor && "
                "brew services start tor`; Windows: start Tor Browser and keep it open")


def _describe(p: TorProbe) -> str:
    what = {9050: " (tor)", 9150: " (Tor Browser)"}.get(p.port, "")
    if p.result == ProbeResult.NOT_TOR:
        return f"{p.address}{what} answers but is not a Tor SOCKS proxy"
    if p.result == ProbeResult.TIMEOUT:
        return f"{p.address}{what} does not answer"
    return f"nothing listens at {p.address}{what}"


def tor_missing_message(tried: Iterable[TorProbe]) -> str:
    """One message for a user whose Tor is not found: what was tried, what to install or set."""
    tried = list(tried)
    where = "; ".join(_describe(p) for p in tried) or "no address tried"
    return (f"Tor is not running ({where}). JoinMarket reaches its directory nodes only "
            f"through Tor. {INSTALL_HINT}. If your Tor listens elsewhere, set its SOCKS port: "
            f"JoinMarket tab > Settings, or `electrum setconfig plugins.joinmarket.channels "
            f"'{{\"socks5\": \"127.0.0.1:9050\"}}'`.")


def not_tor_message(address: str, detail: str = "") -> str:
    return (f"the Tor SOCKS proxy at {address} is unavailable{': ' + detail if detail else ''}. "
            f"{INSTALL_HINT}, or set the SOCKS port Tor really uses (JoinMarket tab > Settings, "
            f"or plugins.joinmarket.channels {{\"socks5\": \"host:port\"}}).")


def control_port_message(address: str, detail: str = "") -> str:
    return (f"a maker publishes its onion service through Tor's control port, and none answers "
            f"at {address}{' (' + detail + ')' if detail else ''}. Enable it in your torrc "
            f"(`ControlPort 9051` and `CookieAuthentication 1`, then restart tor; Tor Browser's "
            f"is 127.0.0.1:9151), or set it: plugins.joinmarket.channels "
            f"{{\"tor_control\": \"127.0.0.1:9051\"}}.")


def control_auth_message(address: str, detail: str = "") -> str:
    return (f"Tor's control port at {address} refused us{': ' + detail if detail else ''}. With "
            f"cookie authentication the cookie file must be readable by this user (Debian: "
            f"`sudo adduser $USER debian-tor`, then log in again); with a password set "
            f"plugins.joinmarket.channels {{\"tor_control_password\": \"...\"}}.")
