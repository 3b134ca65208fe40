"""qdrant-client's local mode (tests only): one client per location, shared explicitly.

Local mode refuses a second client on the same folder, even in the same process ("Storage
folder ... is already accessed by another instance"), and each client would otherwise
rewrite the folder's ``meta.json`` from its own view. A handover keeps two generations open
at once, so everything of one process that uses the same folder must share one client: a
``LocalStore``, owned by the ``QdrantConnection`` they share (``connection.py``; the process
builds one connection, through ``handwerk.index.factory.IndexFactory``). Another process still
cannot open that folder. ``":memory:"`` works the same way: a store is private to the
connection that owns it and lives while one of its users is open.
"""

from __future__ import annotations

import os

from qdrant_client import AsyncQdrantClient

MEMORY = ":memory:"


class LocalStore:
    """One local-mode client for ``location`` (a folder or ``":memory:"``): opened by the
    first ``acquire``, closed by the last ``release``."""

    def __init__(self, location: str) -> None:
        self.location = location if location == MEMORY else os.path.realpath(location)
        self._client: AsyncQdrantClient | None = None
        self._users = 0

    def acquire(self) -> AsyncQdrantClient:
        if self._client is None:
            self._client = AsyncQdrantClient(location=MEMORY) \
                if self.location == MEMORY else AsyncQdrantClient(path=self.location)
        self._users += 1
        return self._client

    async def release(self) -> None:
        self._users -= 1
        if self._users == 0 and self._client is not None:
            client, self._client = self._client, None
            await client.close()  # local mode closes without suspending: no acquire interleaves
