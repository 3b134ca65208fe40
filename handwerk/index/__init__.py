"""The vector index: one Protocol, two adapters (Qdrant Edge embedded, Qdrant server).

What both backends share lives here: the ``VectorIndex`` Protocol and its data types
(``protocol.py``), the input checks both run (``validation.py``), index generations behind an
alias (``catalog.py``: ``GenerationMeta``, ``AliasFolder``, the ``GenerationCatalog``
Protocol), the switchable live generation (``active.py``), read-your-writes wake-ups
(``watch.py``), keyword search's German BM25 analyzer (``keywords.py``) and its compound
splitter (``compounds.py``), and ``factory.py``, the one place that picks a backend (``edge/``,
``qdrant/``).
Anything in handwerk may import the shared modules; the backend subpackages are imported only
by the factory (and by tests or scripts that exercise one backend by name)."""

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
