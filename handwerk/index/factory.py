"""Choose the adapter once, from settings (like qdrant-client's facade chooses local or remote).

A process builds one ``IndexFactory`` where it wires its parts and takes its index and its
catalog from it: on a Qdrant backend they share one ``QdrantConnection``, which qdrant-client's
local mode needs (one client per folder, even within a process). ``open_vector_index`` and
``open_catalog`` build a factory of their own, for a process that needs only one of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from handwerk.index.catalog import AliasFolder, GenerationCatalog
from handwerk.index.protocol import VectorIndex
from handwerk.settings import Settings

if TYPE_CHECKING:
    from handwerk.index.qdrant.connection import QdrantConnection


class IndexFactory:
    """The configured backend's adapters and catalog for one process. Nothing connects until
    an adapter opens or the catalog is asked something."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._qdrant: QdrantConnection | None = None

    def _connection(self) -> QdrantConnection:
        if self._qdrant is None:
            from handwerk.index.qdrant.connection import QdrantConnection

            self._qdrant = QdrantConnection.from_settings(self._settings.index)
        return self._qdrant

    def vector_index(self, *, model: str, dimension: int) -> VectorIndex:
        """Build (not yet open) the configured adapter, bound to the alias. Edge callers must
        hold the data-folder lock."""
        s = self._settings
        if s.index.backend == "edge":
            from handwerk.index.edge.adapter import EdgeVectorIndex

            return EdgeVectorIndex(s.index_dir, s.index.alias, model=model, dimension=dimension)
        from handwerk.index.qdrant.adapter import QdrantServerIndex

        return QdrantServerIndex(alias=s.index.alias, model=model, dimension=dimension,
                                 connection=self._connection(),
                                 folder=AliasFolder(s.index_dir, s.index.alias))

    def catalog(self) -> GenerationCatalog:
        """The configured backend's generations (metadata under ``index_dir`` for both)."""
        s = self._settings
        if s.index.backend == "edge":
            from handwerk.index.edge.catalog import EdgeCatalog

            return EdgeCatalog(s.index_dir, s.index.alias)
        from handwerk.index.qdrant.catalog import QdrantCatalog

        return QdrantCatalog(s.index_dir, s.index.alias, connection=self._connection())


def open_vector_index(settings: Settings, *, model: str, dimension: int) -> VectorIndex:
    """Build (not yet open) the configured adapter, bound to the alias, with a connection of
    its own. Edge callers must hold the data-folder lock."""
    return IndexFactory(settings).vector_index(model=model, dimension=dimension)


def open_catalog(settings: Settings) -> GenerationCatalog:
    """The configured backend's generations, with a connection of their own."""
    return IndexFactory(settings).catalog()
