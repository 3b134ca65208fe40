"""wait_indexed is woken by the consumer that applied the version, not by polling."""

from __future__ import annotations

import asyncio

from handwerk.index.watch import IndexedVersions


async def test_waiters_wake_on_an_applied_version_at_or_above_theirs() -> None:
    watch = IndexedVersions()
    v2 = asyncio.create_task(watch.wait("p", 2, timeout=5))
    v3 = asyncio.create_task(watch.wait("p", 3, timeout=0.2))
    await asyncio.sleep(0)
    watch.applied({"p": 2, "other": 9})
    assert await v2 is True
    assert await v3 is False  # not yet applied: times out
    assert watch.waiting == 0


async def test_a_newer_version_wakes_older_waiters() -> None:
    watch = IndexedVersions()
    waiter = asyncio.create_task(watch.wait("p", 1, timeout=5))
    await asyncio.sleep(0)
    watch.applied({"p": 4})
    assert await waiter is True
