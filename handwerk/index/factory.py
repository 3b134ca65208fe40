"""Choose the adapter once, from settings (like qdrant-client's facade chooses local or remote)."""

from __future__ import annotations

from handwerk.index.catalog import AliasFolder, GenerationCatalog
from handwerk.index.protocol import VectorIndex
from handwerk.settings import Settings


def open_vector_index(settings: Settings, *, model: str, dimension: int) -> VectorIndex:
    """Build (not yet open) the configured adapter, bound to the alias. Edge callers must hold
    the data-folder lock."""
    if settings.index_backend == "edge":
        from handwerk.index.edge.adapter import EdgeVectorIndex

        return EdgeVectorIndex(settings.index_dir, settings.index_alias, model=model,
                               dimension=dimension)
    from handwerk.index.qdrant.adapter import QdrantServerIndex, qdrant_options

    return QdrantServerIndex(alias=settings.index_alias, model=model, dimension=dimension,
                             **qdrant_options(settings),
                             folder=AliasFolder(settings.index_dir, settings.index_alias))


def open_catalog(settings: Settings) -> GenerationCatalog:
    """The configured backend's generations (metadata under ``index_dir`` for both)."""
    if settings.index_backend == "edge":
        from handwerk.index.edge.adapter import EdgeCatalog

        return EdgeCatalog(settings.index_dir, settings.index_alias)
    from handwerk.index.qdrant.adapter import QdrantCatalog, qdrant_options

    return QdrantCatalog(settings.index_dir, settings.index_alias, **qdrant_options(settings))
