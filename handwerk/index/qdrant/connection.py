"""Where a Qdrant is and how to reach it: settings become qdrant-client options here.

Secured servers: ``qdrant_options(index)`` gives the URL (an ``https://`` one turns TLS on),
the API key and ``verify`` (system CAs, a context trusting ``qdrant_ca_file``, or off). A
``QdrantConnection`` holds them and hands out clients: a server's client per ``connect``, or
the one client of a local-mode store (``local.py``) shared by every adapter and catalog given
the same connection.
"""

from __future__ import annotations

import ssl
from typing import Any

from qdrant_client import AsyncQdrantClient

from handwerk.index.qdrant.local import LocalStore
from handwerk.settings.groups import IndexSettings


def qdrant_verify(index: IndexSettings) -> bool | ssl.SSLContext:
    """httpx ``verify`` for qdrant-client's REST connection: system CAs, a context trusting
    ``qdrant_ca_file``, or (tests only) no verification."""
    if not index.qdrant_verify_tls:
        return False
    if index.qdrant_ca_file is not None:
        return ssl.create_default_context(cafile=str(index.qdrant_ca_file))
    return True


def qdrant_options(index: IndexSettings) -> dict[str, Any]:
    """Where and how the adapter and the catalog reach Qdrant (URL or local path, API key,
    TLS verification): the one place settings become qdrant-client options.

    qdrant-client 1.20 checks the server version with a bare ``httpx.get`` that ignores
    ``verify``: against a private CA it always fails and warns, so it is off then."""
    verify = qdrant_verify(index)
    api_key = index.qdrant_api_key.get_secret_value() if index.qdrant_api_key else None
    return {"url": index.qdrant_url, "path": index.qdrant_path, "api_key": api_key,
            "verify": verify, "check_compatibility": verify is True}


class QdrantConnection:
    """A server (``url``: a client of its own per ``connect``) or a local-mode store (``path``,
    a folder or ``":memory:"``: one client, shared by everything holding this connection).
    Build one per process and give it to every adapter and catalog of that process."""

    def __init__(self, *, url: str | None = None, path: str | None = None,
                 api_key: str | None = None, verify: bool | ssl.SSLContext = True,
                 check_compatibility: bool = True) -> None:
        self.url, self.path, self.api_key, self.verify = url, path, api_key, verify
        self.check_compatibility = check_compatibility
        self.local = LocalStore(path) if path is not None else None

    @classmethod
    def from_settings(cls, index: IndexSettings) -> QdrantConnection:
        return cls(**qdrant_options(index))

    def connect(self) -> AsyncQdrantClient:
        if self.local is not None:
            return self.local.acquire()
        return AsyncQdrantClient(url=self.url, api_key=self.api_key, timeout=10,
                                 verify=self.verify, check_compatibility=self.check_compatibility)

    async def disconnect(self, client: AsyncQdrantClient) -> None:
        if self.local is not None:
            await self.local.release()
        else:
            await client.close()
