"""Input checks both adapters run before they call their engine.

An id that is not a UUID or a vector of the wrong size, with NaN or with infinite values can
never be written, whichever engine sits behind the adapter: refusing it here raises
``IndexRejected`` naming the project, the same way for Qdrant Edge and a Qdrant server,
instead of depending on how each engine words its error.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np

from handwerk.index.protocol import IndexRejected


def check_ids(project_ids: Sequence[str]) -> list[str]:
    """Point ids are project UUIDs (as strings); anything else is refused."""
    for pid in project_ids:
        try:
            uuid.UUID(str(pid))
        except (ValueError, TypeError, AttributeError) as e:
            raise IndexRejected(f"point id {pid!r} is not a UUID") from e
    return [str(pid) for pid in project_ids]


def check_dimensions(owners: Sequence[str], vectors: Sequence[Sequence[float]],
                     dimension: int) -> None:
    """Cheap (no element is read): every vector has ``dimension`` entries."""
    for owner, vector in zip(owners, vectors, strict=True):
        try:
            size = len(vector)
        except TypeError as e:
            raise IndexRejected(f"{owner}: the vector is not a sequence of numbers") from e
        if size != dimension:
            raise IndexRejected(f"{owner}: vector has {size} dimensions, the index {dimension}")


def check_vectors(owners: Sequence[str], vectors: Sequence[Sequence[float]], dimension: int,
                  *, chunk: int = 64) -> list[list[float]]:
    """Each vector as plain floats; ``owners[i]`` (a project id, or "query 2") names vector i
    in the error. Reads every element, in chunks of ``chunk`` vectors so that a thread running
    it hands the GIL back between chunks."""
    check_dimensions(owners, vectors, dimension)
    rows: list[list[float]] = []
    for start in range(0, len(vectors), chunk):
        try:
            matrix = np.asarray(vectors[start:start + chunk], dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise IndexRejected(f"vectors are not numeric: {e}") from e
        finite = np.isfinite(matrix).all(axis=1)
        if not finite.all():
            owner = owners[start + int(np.argmin(finite))]
            raise IndexRejected(f"{owner}: vector has NaN or infinite values")
        rows.extend(matrix.tolist())
    return rows


def check_queries(vectors: Sequence[Sequence[float]] | None, texts: Sequence[str] | None,
                  dimension: int) -> list[tuple[list[float] | None, str | None]]:
    """A batch search's queries as (vector, text) pairs, the vectors checked: dense, keyword
    or hybrid queries alike (``VectorIndex.search_batch``)."""
    checked = check_vectors([f"query {i}" for i in range(len(vectors))], vectors, dimension) \
        if vectors is not None else None
    count = len(checked) if checked is not None else len(texts or ())
    if texts is not None and len(texts) != count:
        raise IndexRejected(f"{count} query vectors but {len(texts)} query texts")
    return [(checked[i] if checked is not None else None,
             texts[i] if texts is not None else None) for i in range(count)]
