"""Which Tor the daemon should use, found from the plugin's side (asyncio, no network beyond
127.0.0.1): the SOCKS port the user pinned, else Electrum's own proxy when it is Tor, else
127.0.0.1:9050 (tor), else 127.0.0.1:9150 (Tor Browser). Each candidate is checked with a
Tor-only local probe (:mod:`jmcore.torcheck`). The control port (needed by a maker only) is the
pinned one, else 9151 next to Tor Browser's 9150, else 9051 on the SOCKS host.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from electrum_joinmarket.logs import get_logger
from jmcore.channels import DEFAULT_SOCKS_PORTS, TOR_BROWSER_SOCKS_PORT, ChannelSettings, TorEndpoints
from jmcore.torcheck import ProbeResult, TorProbe, not_tor_message, probe_tor_socks, tor_missing_message

log = get_logger(__name__)

__all__ = ["TorResolution", "resolve_tor", "electrum_tor_proxy"]


@dataclass
class TorResolution:
    """The outcome: ``endpoints`` (None if no Tor was found), every probe made, a message."""

    endpoints: Optional[TorEndpoints]
    probes: list[TorProbe] = field(default_factory=list)
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.endpoints is not None

    def to_dict(self) -> dict:
        return {"found": self.ok,
                "socks5": self.endpoints.socks5 if self.endpoints else None,
                "control": self.endpoints.control if self.endpoints else None,
                "source": self.endpoints.source if self.endpoints else None,
                "probes": {p.address: p.result.value for p in self.probes},
                "message": self.message}


def electrum_tor_proxy(network: Any) -> tuple[Optional[tuple[str, int]], Optional[bool]]:
    """Electrum's proxy ``(host, port)`` if it is an enabled SOCKS5 proxy, and whether Electrum
    found it to be Tor (``network.is_proxy_tor``: True/False, None = not probed yet)."""
    proxy = getattr(network, "proxy", None)
    if proxy is None or not getattr(proxy, "enabled", False) or getattr(proxy, "mode", "") != "socks5":
        return None, None
    try:
        addr = (str(proxy.host), int(proxy.port))
    except (TypeError, ValueError):
        return None, None
    return addr, getattr(network, "is_proxy_tor", None)


def _control_for(host: str, port: int, settings: ChannelSettings, source: str) -> TorEndpoints:
    pinned = settings.pinned_tor()
    if settings.tor_control and pinned is not None:
        ch, cp = pinned.tor_control_host, pinned.tor_control_port
    else:
        ch, cp = host, (9151 if port == TOR_BROWSER_SOCKS_PORT else 9051)
    return TorEndpoints(host, port, ch, cp, settings.tor_control_password, source=source)


async def resolve_tor(settings: ChannelSettings, network: Any = None,
                      timeout: float = 5.0) -> TorResolution:
    """Find Tor as described in the module docstring; never raises."""
    probes: list[TorProbe] = []
    pinned = settings.pinned_tor()
    if pinned is not None:
        p = await probe_tor_socks(pinned.socks5_host, pinned.socks5_port, timeout)
        probes.append(p)
        if p.ok:
            return TorResolution(pinned, probes, f"Tor at {p.address} (your setting)")
        detail = {ProbeResult.CLOSED: "nothing listens there",
                  ProbeResult.NOT_TOR: "it is not a Tor SOCKS proxy",
                  ProbeResult.TIMEOUT: "it does not answer"}[p.result]
        return TorResolution(None, probes, not_tor_message(p.address, detail))
    candidates: list[tuple[tuple[str, int], str]] = []
    addr, is_tor = electrum_tor_proxy(network)
    if addr is not None and is_tor is not False:
        candidates.append((addr, "Electrum's proxy"))
    for port in DEFAULT_SOCKS_PORTS:
        if ("127.0.0.1", port) not in [c for c, _ in candidates]:
            candidates.append((("127.0.0.1", port),
                               "Tor Browser" if port == TOR_BROWSER_SOCKS_PORT else "tor"))
    for (host, port), what in candidates:
        p = await probe_tor_socks(host, port, timeout)
        probes.append(p)
        if p.ok:
            ep = _control_for(host, port, settings, source=f"{what} at {p.address}")
            return TorResolution(ep, probes, f"Tor found: {what} at {p.address}")
    return TorResolution(None, probes, tor_missing_message(probes))
