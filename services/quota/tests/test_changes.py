"""The change counter WatchLimits streams wait on."""

from __future__ import annotations

import asyncio

from flakehouse.quota.changes import Changes


async def test_waiters_wake_on_a_change_and_end_on_close() -> None:
    changes = Changes()
    waiting = asyncio.create_task(changes.wait_after(0))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await changes.publish()
    assert await asyncio.wait_for(waiting, 1) == 1
    assert await changes.wait_after(0) == 1  # already past: no wait
    waiting = asyncio.create_task(changes.wait_after(1))
    await asyncio.sleep(0.01)
    await changes.close()
    assert await asyncio.wait_for(waiting, 1) is None
