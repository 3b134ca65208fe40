"""Read-your-writes without polling: the consumer in this process announces the versions it
wrote; API requests waiting for ``wait_indexed`` wake at once. Waiters re-read the index after
waking (the conditional write may have refused the version), and processes without a local
consumer fall back to polling."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping


class IndexedVersions:
    def __init__(self) -> None:
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}

    def applied(self, versions: Mapping[str, int]) -> None:
        for project_id, version in versions.items():
            waiting = self._waiters.get(project_id)
            if not waiting:
                continue
            still = []
            for wanted, future in waiting:
                if wanted <= version:
                    if not future.done():
                        future.set_result(None)
                else:
                    still.append((wanted, future))
            if still:
                self._waiters[project_id] = still
            else:
                del self._waiters[project_id]

    async def wait(self, project_id: str, version: int, timeout: float) -> bool:
        """Until a write of ``version`` or newer was announced, or ``timeout``; True if woken."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (version, future)
        self._waiters.setdefault(project_id, []).append(entry)
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            waiting = self._waiters.get(project_id)
            if waiting is not None and entry in waiting:
                waiting.remove(entry)
                if not waiting:
                    del self._waiters[project_id]

    @property
    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())
