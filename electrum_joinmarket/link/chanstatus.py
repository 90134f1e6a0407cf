"""The daemon's report on a session's message channels (our ``EJMChannelStatus`` AMP extension,
docs/amp-extensions.md), read defensively — it comes from another process — and turned into what
a user reads: a one-line summary, one line per directory, and the fatal reason (Tor missing, the
onion service refused) that should end a wait at once instead of after a timeout."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["ChannelReport", "short_location"]


def short_location(location: str) -> str:
    """``satoshi2vcg5e…onion:5222`` for display."""
    host, _, port = str(location).rpartition(":")
    if host.endswith(".onion") and len(host) > 20:
        host = host[:12] + "...onion"
    return f"{host}:{port}" if port else str(location)


def _d(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _s(value: Any, limit: int = 400) -> str:
    return str(value)[:limit] if value is not None else ""


@dataclass
class ChannelReport:
    up: bool = False
    jminit: str = "none"
    error: str = ""
    channels: list[dict] = field(default_factory=list)

    @classmethod
    def from_json(cls, value: Any) -> "ChannelReport":
        if isinstance(value, (str, bytes)):
            try:
                value = json.loads(value)
            except ValueError:
                value = {}
        if not isinstance(value, dict):
            value = {}
        chans = value.get("channels")
        chans = [c for c in chans if isinstance(c, dict)][:16] if isinstance(chans, list) else []
        return cls(up=bool(value.get("up")), jminit=_s(value.get("jminit", "none"), 20),
                   error=_s(value.get("error")), channels=chans)

    def to_dict(self) -> dict:
        return {"up": self.up, "jminit": self.jminit, "error": self.error or None,
                "channels": self.channels}

    # -- pieces
    def onion(self) -> Optional[dict]:
        for c in self.channels:
            if c.get("type") == "onion":
                return c
        return None

    def directories(self) -> list[dict]:
        onion = self.onion()
        dirs = onion.get("directories") if onion else None
        return [d for d in dirs if isinstance(d, dict)][:64] if isinstance(dirs, list) else []

    # -- for people
    def fatal(self) -> Optional[str]:
        """Why the channels cannot come up without the user doing something, or None."""
        if self.jminit == "refused":
            return f"the daemon refused our channels: {self.error}"
        onion = self.onion()
        others_up = any(c.get("up") for c in self.channels if c is not onion)
        if onion is not None and not onion.get("up") and not others_up:
            if onion.get("failure"):
                return _s(onion["failure"], 1000)
            tor = _d(onion.get("tor"))
            dirs = self.directories()
            if tor.get("state") == "unavailable" and not any(d.get("state") == "up"
                                                             for d in dirs):
                return _s(tor.get("message"), 1000) or "Tor is not available"
        return None

    def summary(self) -> str:
        parts = []
        for c in self.channels:
            if c.get("type") == "onion":
                dirs = self.directories()
                counts = Counter(_s(d.get("state"), 20) for d in dirs)
                order = ("up", "handshaking", "connecting", "refused", "unreachable",
                         "tor-unavailable", "stopped")
                text = ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))
                tor = _d(c.get("tor"))
                via = "plain TCP (test mode)" if c.get("test_mode") else \
                    f"Tor {_s(tor.get('socks5'), 60)}"
                reasons = Counter(_s(d.get("reason"), 120) for d in dirs
                                  if d.get("state") in ("refused", "unreachable") and d.get("reason"))
                why = f" ({'; '.join(r for r, _ in reasons.most_common(2))})" if reasons else ""
                serving = _d(c.get("serving"))
                srv = ""
                if serving.get("state") == "up":
                    srv = f"; serving {short_location(_s(serving.get('location'), 80))}"
                elif serving.get("state") == "publishing":
                    srv = "; publishing our onion service"
                elif serving.get("state") == "failed":
                    srv = "; our onion service failed"
                parts.append(f"onion via {via}: {len(dirs)} directories: {text or 'none'}"
                             f"{why}{srv}")
            elif c.get("type") == "irc":
                reason = f" ({_s(c.get('reason'), 120)})" if c.get("reason") and not c.get("up") else ""
                parts.append(f"IRC {_s(c.get('server'), 80)} {_s(c.get('state'), 20)}{reason}")
        if self.jminit == "refused":
            parts.insert(0, f"channels refused: {self.error}")
        return "; ".join(parts) or "no channels"

    def directory_lines(self) -> list[str]:
        out = []
        for d in self.directories():
            line = f"{short_location(_s(d.get('location'), 80))}: {_s(d.get('state'), 20)}"
            if d.get("nick") and d.get("state") == "up":
                line += f" ({_s(d.get('nick'), 20)})"
            if d.get("reason") and d.get("state") != "up":
                line += f" - {_s(d.get('reason'), 200)}"
            if d.get("state") != "up" and d.get("attempts"):
                line += f" [attempt {d.get('attempts')}]"
            out.append(line)
        return out
