"""TCP options of the daemon's connections."""
import logging

log = logging.getLogger(__name__)

__all__ = ["send_at_once"]


def send_at_once(transport) -> None:
    """Switch Nagle's algorithm off (TCP_NODELAY) on ``transport``'s socket.

    Every step of a coinjoin is a few small lines from one side answered by the other, through
    up to three hops (plugin -> daemon -> IRC server or peer -> daemon -> plugin). With Nagle on,
    a small write that follows another before its ACK arrived is held back until that ACK, and the
    receiver delays ACKs by up to 40 ms (Linux): up to 40 ms per hop per step. The plugin's side
    (asyncio) already sends at once. A transport without the option (not TCP: a test's, a
    wrapper's) is left as it is; a failure is only logged."""
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is None:
        return
    try:
        set_no_delay(True)
    except OSError as exc:
        log.debug("TCP_NODELAY not set: %s", exc)
