"""What every message channel offers the message layer (jmdaemon.messaging)."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


class MessageChannel:
    """A transport for JoinMarket messages.

    The collection (``self.collection``) receives: ``on_welcome(mc)``, ``on_disconnect(mc)``,
    ``on_pubmsg(mc, nick, msg)``, ``on_privmsg(mc, nick, msg)`` (a complete ``!cmd ... pub sig``),
    ``on_nick_leave(mc, nick)``, ``on_nick_seen(mc, nick)``.
    """

    hostid = "unset"
    kind = "base"

    def __init__(self) -> None:
        self.nick: str | None = None
        self.collection: Any = None       # the MessageChannelCollection that owns this channel

    def set_nick(self, nick: str) -> None:
        self.nick = nick

    # -- to implement
    def run(self) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        raise NotImplementedError

    def pubmsg(self, msg: str) -> None:
        raise NotImplementedError

    def privmsg(self, nick: str, cmd: str, message: str) -> None:
        """Send ``!cmd message`` (message already ends with ``pub sig``) to nick."""
        raise NotImplementedError

    def announce_orders(self, orderlines: Iterable[str]) -> None:
        """Publish ``!offer ...`` strings (one pubmsg each unless the channel packs them)."""
        for line in orderlines:
            self.pubmsg(line)

    # -- helpers for implementations
    def _emit(self, event: str, *args: Any) -> None:
        if self.collection is None:
            return
        try:
            getattr(self.collection, event)(self, *args)
        except Exception:  # bad input must never kill a channel (invariant 4)
            log.exception("error handling %s on %s", event, self.hostid)
