"""Keyword search: German BM25 sparse vectors, computed in the application for both backends.

Qdrant Edge has a BM25 embedder with German analysis (Snowball stemming, stopwords); a Qdrant
server has no tokenizer of its own for sparse vectors (qdrant-client's local mode only the
default one). So every adapter computes the sparse vectors here, with the same analyzer, from
the same text the dense model embeds (``contract.text.project_text`` of the stored payload),
and stores them under ``KEYWORD_VECTOR`` with Qdrant's IDF modifier: both backends then rank
alike (the contract suite compares them).

A generation records the analyzer it was built with (``GenerationMeta.keywords``); one built
before keyword search existed records none and refuses keyword and hybrid searches
(``KeywordSearchUnavailable``) until a reindex adds the sparse vectors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import qdrant_edge as qe

from handwerk.contract.text import TEXT_TEMPLATE

KEYWORD_VECTOR = "bm25"
"""The sparse vector's name in every generation that has one (the dense vector is unnamed)."""

SearchMode = Literal["dense", "keyword", "hybrid"]
SEARCH_MODES: tuple[SearchMode, ...] = ("dense", "keyword", "hybrid")

# Mean analyzed length (tokens after stopwords) of project texts: 24.0 over the 1,000-project
# demo corpus (median 23, range 18-37). Bm25Config's default, 256, would flatten the length
# normalisation for texts this short.
DEFAULT_AVG_LEN = 24.0


class KeywordSearchUnavailable(RuntimeError):
    """The generation has no sparse vectors (built before keyword search existed)."""

    def __init__(self, generation: str) -> None:
        super().__init__(
            f"index generation {generation} was built without keyword vectors, so it answers "
            "only mode=dense; run `handwerk reindex` (it reuses the dense vectors) to add them")


def default_keyword_spec() -> dict[str, Any]:
    """What a new generation records: analyzer, language, BM25 parameters."""
    return {"analyzer": "bm25", "language": "german", "k": 1.2, "b": 0.75,
            "avg_len": DEFAULT_AVG_LEN}


@dataclass(frozen=True, slots=True)
class Fusion:
    """How hybrid search merges the dense and the keyword ranking (Qdrant's Query API: two
    prefetches, then fusion). ``rrf``: reciprocal rank fusion with ``k`` and the two weights;
    ``dbsf``: distribution-based score fusion (unweighted in Qdrant Edge 0.9)."""

    method: Literal["rrf", "dbsf"] = "rrf"
    k: int = 60
    dense_weight: float = 1.0
    keyword_weight: float = 1.0
    prefetch: int = 50  # candidates each side contributes (at least top_k)

    def best_score(self) -> float:
        """The score of a project first in both rankings: the scale of ``similarity``."""
        if self.method == "rrf":
            return (self.dense_weight + self.keyword_weight) / (self.k + 1)
        return 2.0


class KeywordAnalyzer:
    """The BM25 analyzer a generation's ``keywords`` record describes."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = dict(spec)
        self._bm25 = qe.Bm25(qe.Bm25Config(
            k=float(spec.get("k", 1.2)), b=float(spec.get("b", 0.75)),
            avg_len=float(spec.get("avg_len", DEFAULT_AVG_LEN)),
            language=str(spec.get("language", "german"))))

    def document(self, payload: Mapping[str, Any]) -> qe.SparseVector | None:
        """The sparse vector of a stored point (None for a tombstone: it has no text)."""
        if payload.get("state") == "deleted" or "description" not in payload:
            return None
        return self._bm25.embed_document(payload_text(payload))

    def query(self, text: str) -> qe.SparseVector:
        return self._bm25.embed_query(text)


def payload_text(payload: Mapping[str, Any]) -> str:
    """``project_text`` of a stored payload, tolerant of a missing field (an upstream event
    that left one out still gets its other words indexed)."""
    return TEXT_TEMPLATE.format(**{name: payload.get(name) or "" for name in
                                   ("name", "description", "project_type", "wood_type", "region")})


def terms(vector: qe.SparseVector) -> tuple[list[int], list[float]]:
    return list(vector.indices), [float(v) for v in vector.values]
