"""asyncio helpers shared by the plugin and jmcore (standard library only).

:func:`wait_for` replaces :func:`asyncio.wait_for` everywhere in ``electrum_joinmarket`` and
``jmcore`` (a test keeps it so). On Python 3.10 and 3.11, ``asyncio.wait_for`` swallows a
cancellation of the calling task when the awaited thing completes in the same loop iteration
as the cancel (cpython gh-86296 / bpo-42130, fixed in 3.12): it returns the result and the task
runs on as if nobody had cancelled it. For a coinjoin that means a user's cancel is lost and
the taker goes on to sign and broadcast. Electrum has ``electrum.util.wait_for2`` for the same
reason; this is jmcore's, without Electrum (jmcore imports only the standard library).
"""
from __future__ import annotations

import asyncio
import sys
from typing import Awaitable, Optional, TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")


async def _wait_for_timeout(aw: Awaitable[T], timeout: Optional[float]) -> T:
    """Python 3.11+: ``asyncio.timeout`` (what 3.12's own ``asyncio.wait_for`` is built on).
    The awaitable runs in the calling task, so a cancellation of the task is delivered into it
    like at any other await; a timeout's own cancel is told apart by ``Task.uncancel``."""
    async with asyncio.timeout(timeout):
        return await aw


async def _wait_for_wait(aw: Awaitable[T], timeout: Optional[float]) -> T:
    """Any Python >= 3.10 (the one used on 3.10, which has no ``asyncio.timeout``): the
    awaitable runs as its own task, watched with ``asyncio.wait``, which never swallows a
    cancellation. Cancelled meanwhile: the awaitable is cancelled and waited for, and the
    ``CancelledError`` goes on — even if the awaitable had just finished (its result is then
    dropped: the cancellation wins, as on 3.12)."""
    if timeout is None:
        return await aw
    fut = asyncio.ensure_future(aw)
    try:
        await asyncio.wait((fut,), timeout=max(0.0, timeout))
    except asyncio.CancelledError:
        fut.cancel()
        try:
            await asyncio.wait((fut,))       # its cleanup runs before we go on
        finally:
            if fut.done() and not fut.cancelled():
                fut.exception()              # retrieved: no "exception never retrieved" log
        raise
    if fut.done():
        return fut.result()
    fut.cancel()
    await asyncio.wait((fut,))
    if not fut.cancelled():                  # it finished (or failed) while being cancelled
        return fut.result()
    raise asyncio.TimeoutError()


if sys.version_info >= (3, 11):
    _impl = _wait_for_timeout
else:
    _impl = _wait_for_wait


async def wait_for(aw: Awaitable[T], timeout: Optional[float]) -> T:
    """Await ``aw`` for at most ``timeout`` seconds (``None``: no limit), like
    :func:`asyncio.wait_for`.

    Invariant: a cancellation of the calling task is never lost — it raises ``CancelledError``
    out of this call even when ``aw`` completes in the same loop iteration (where
    ``asyncio.wait_for`` on 3.10/3.11 returns the result instead). On timeout ``aw`` is
    cancelled (and has finished unwinding) and ``asyncio.TimeoutError`` is raised (the builtin
    ``TimeoutError`` on 3.11+). Must be called from a task (as ``asyncio.wait_for``)."""
    return await _impl(aw, timeout)
