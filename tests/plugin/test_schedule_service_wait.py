"""F5: ScheduleService.wait (what joinmarket_schedule_stop awaits after it stops the schedule)
tells the schedule task's end from its caller's own cancellation: a cancelled caller gets
CancelledError (it used to get None, as if the schedule had stopped), a timeout leaves the
schedule's task running, a stopped schedule answers None."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from electrum_joinmarket.schedule.service import ScheduleService


def test_f5_wait_never_swallows_the_callers_cancellation():
    async def main() -> None:
        unused: Any = None                           # wait() needs no wallet, depths, executor
        svc = ScheduleService(SimpleNamespace(save_db=lambda: None), {}, unused, unused, unused)
        svc.task = asyncio.ensure_future(asyncio.sleep(10))
        with pytest.raises(asyncio.TimeoutError):
            await svc.wait(0.01)
        assert not svc.task.done()                   # a timeout does not stop the schedule
        caller = asyncio.ensure_future(svc.wait(None))
        await asyncio.sleep(0.01)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert not svc.task.done()                   # nor does the caller's cancellation
        svc.task.cancel()                            # stopped: None
        assert await svc.wait(1) is None
        svc.task = asyncio.ensure_future(asyncio.sleep(0, result="the schedule"))
        assert await svc.wait(1) == "the schedule"
    asyncio.run(main())
