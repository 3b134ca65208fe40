"""The vector index: one Protocol, two adapters (Qdrant Edge embedded, Qdrant server)."""

from handwerk.index.factory import open_vector_index
from handwerk.index.protocol import (
    Hit,
    IndexMismatch,
    IndexStats,
    IndexUnavailable,
    PointState,
    SearchFilters,
    Tombstone,
    UpsertPoint,
    VectorIndex,
)

__all__ = [
    "Hit", "IndexMismatch", "IndexStats", "IndexUnavailable", "PointState", "SearchFilters",
    "Tombstone", "UpsertPoint", "VectorIndex", "open_vector_index",
]
