"""F5 (a cancel is never lost): jmcore.aio.wait_for, the cancellation-safe asyncio.wait_for.

On 3.10/3.11 ``asyncio.wait_for`` returns the result instead of raising ``CancelledError`` when
the caller is cancelled in the loop iteration in which the awaited thing completes (cpython
gh-86296); a user's cancel of a coinjoin waiting for offers was lost that way and the coinjoin
signed and broadcast. The race below is deterministic: the event is set and the waiting task
cancelled in the same callback. Both implementations are tested on every interpreter that can
run them (the 3.10 one, built on ``asyncio.wait``, runs everywhere), and the race is shown to
break ``asyncio.wait_for`` where it is broken (so the test is known to catch the bug)."""
from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from jmcore import aio

IMPLS = [pytest.param(aio.wait_for, id="wait_for")]
IMPLS.append(pytest.param(aio._wait_for_wait, id="via-asyncio.wait"))
if sys.version_info >= (3, 11):
    IMPLS.append(pytest.param(aio._wait_for_timeout, id="via-asyncio.timeout"))

ROOT = Path(__file__).resolve().parents[2]


def _race(wf) -> str:
    """The waiter is cancelled in the same callback that sets the event it waits for."""
    async def main() -> str:
        ev = asyncio.Event()

        async def waiter() -> str:
            await wf(ev.wait(), 10)
            return "cancel lost"
        t = asyncio.ensure_future(waiter())
        await asyncio.sleep(0)
        await asyncio.sleep(0)          # the waiter is suspended inside wf now
        ev.set()
        t.cancel()
        try:
            return await t
        except asyncio.CancelledError:
            return "cancelled"
    return asyncio.run(main())


@pytest.mark.parametrize("wf", IMPLS)
def test_f5_cancel_as_the_awaited_event_fires_is_not_lost(wf):
    assert _race(wf) == "cancelled"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio.wait_for is fixed in 3.12")
def test_the_race_loses_the_cancel_with_asyncio_wait_for_here():
    """The reproduction is real on this interpreter: the stdlib function fails it."""
    assert _race(asyncio.wait_for) == "cancel lost"


def test_the_version_picks_the_implementation():
    expected = aio._wait_for_timeout if sys.version_info >= (3, 11) else aio._wait_for_wait
    assert aio._impl is expected


@pytest.mark.parametrize("wf", IMPLS)
def test_result_timeout_and_cancel_semantics(wf):
    async def main() -> None:
        # a result in time
        assert await wf(asyncio.sleep(0.01, result=7), 5) == 7
        assert await wf(asyncio.sleep(0, result=8), None) == 8
        # a timeout: TimeoutError, and the awaitable was cancelled and has unwound
        unwound: list = []

        async def slow() -> None:
            try:
                await asyncio.sleep(10)
            finally:
                unwound.append(True)
        with pytest.raises(asyncio.TimeoutError):
            await wf(slow(), 0.05)
        assert unwound == [True]
        fut = asyncio.get_running_loop().create_future()
        with pytest.raises(asyncio.TimeoutError):    # the builtin TimeoutError on 3.11+
            await wf(fut, 0)
        assert fut.cancelled()
        # its own exception comes through
        async def boom() -> None:
            raise ValueError("x")
        with pytest.raises(ValueError):
            await wf(boom(), 5)
        # the caller cancelled while waiting: CancelledError, the awaitable cancelled
        inner = asyncio.get_running_loop().create_future()
        t = asyncio.ensure_future(wf(inner, 10))
        await asyncio.sleep(0.01)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        assert inner.cancelled()
    asyncio.run(main())


def test_no_asyncio_wait_for_left_in_the_plugin_or_jmcore():
    """Every wait with a timeout in the asyncio packages goes through jmcore.aio.wait_for."""
    pattern = re.compile(r"\basyncio\s*\.\s*wait_for\s*\(|from\s+asyncio\s+import[^\n]*\bwait_for\b")
    found = []
    for pkg in ("electrum_joinmarket", "jmcore"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path == ROOT / "jmcore" / "aio.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if pattern.search(code):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert found == []
