"""Keyword search: German BM25 sparse vectors, computed in the application for both backends.

Qdrant Edge has a BM25 embedder with German analysis (Snowball stemming, stopwords); a Qdrant
server has no tokenizer of its own for sparse vectors (qdrant-client's local mode only the
default one). So every adapter computes the sparse vectors here, with the same analyzer, from
the same text the dense model embeds (``contract.text.project_text`` of the stored payload),
and stores them under ``KEYWORD_VECTOR`` with Qdrant's IDF modifier: both backends then rank
alike (the contract suite compares them).

German compounds (``compounds``): a new generation's analyzer also splits compounds in
documents and queries ("Eichentreppe" meets "Holztreppe aus Eiche") and adds the parts as a
second sparse vector at ``weight`` (0.5) to the text's own. Measured on the relevance benchmark
(``tooling/relevance/compounds.py``, 1,000 projects, hybrid DBSF p=100): nDCG@10 0.623 -> 0.670
with MiniLM and 0.737 -> 0.755 with e5; no class fell by more than 0.013. Parts as plain extra
words (weight 1) scored the same overall but cost the corpus's own words 0.02.

A generation records the analyzer it was built with (``GenerationMeta.keywords``) and keeps
it: one recorded without ``compounds`` is analyzed without splitting, so its stored vectors and
its queries stay alike. One built before keyword search existed records none and refuses
keyword and hybrid searches (``KeywordSearchUnavailable``) until a reindex adds the sparse
vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import qdrant_edge as qe

from handwerk.contract.text import TEXT_TEMPLATE
from handwerk.index.compounds import CompoundSplitter, german_frequencies

WORDFREQ = "3.1.1"  # pinned in pyproject.toml; a generation records it (handwerk.index.compounds)

KEYWORD_VECTOR = "bm25"
"""The sparse vector's name in every generation that has one (the dense vector is unnamed)."""

DENSE_ONLY = [""]
"""Reads ask for the (unnamed) dense vector alone: a record then carries a plain list, and no
page of an export or a reuse check builds the sparse vectors it never uses."""

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
    """What a new generation records: analyzer, language, BM25 parameters, compound splitting."""
    return {"analyzer": "bm25", "language": "german", "k": 1.2, "b": 0.75,
            "avg_len": DEFAULT_AVG_LEN,
            "compounds": {"splitter": "koehn-knight", "frequencies": f"wordfreq {WORDFREQ} de",
                          "min_part": 4, "min_zipf": 3.0, "weight": 0.5}}


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



class KeywordAnalyzer:
    """The BM25 analyzer a generation's ``keywords`` record describes."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = dict(spec)
        self._bm25 = qe.Bm25(qe.Bm25Config(
            k=float(spec.get("k", 1.2)), b=float(spec.get("b", 0.75)),
            avg_len=float(spec.get("avg_len", DEFAULT_AVG_LEN)),
            language=str(spec.get("language", "german"))))
        self._splitter, self._parts_weight = _splitter(spec.get("compounds"))

    def document(self, payload: Mapping[str, Any]) -> qe.SparseVector | None:
        """The sparse vector of a stored point (None for a tombstone: it has no text)."""
        if payload.get("state") == "deleted" or "description" not in payload:
            return None
        return self._analyze(payload_text(payload), self._bm25.embed_document)

    def query(self, text: str) -> qe.SparseVector:
        return self._analyze(text, self._bm25.embed_query)

    def _analyze(self, text: str, embed: Callable[[str], qe.SparseVector]) -> qe.SparseVector:
        """The text's vector, plus its compounds' parts' vector at the spec's weight (the parts
        analyzed apart, so they leave the text's own length normalisation alone)."""
        whole = embed(text)
        parts = self._splitter.parts(text) if self._splitter is not None else []
        if not parts:
            return whole
        weights = dict(zip(whole.indices, whole.values, strict=True))
        extra = embed(" ".join(parts))
        for index, value in zip(extra.indices, extra.values, strict=True):
            weights[index] = weights.get(index, 0.0) + self._parts_weight * value
        ordered = sorted(weights)
        return qe.SparseVector(indices=ordered, values=[weights[i] for i in ordered])


def _splitter(spec: Mapping[str, Any] | None) -> tuple[CompoundSplitter | None, float]:
    """The splitter a ``compounds`` record describes (None: the generation does not split)."""
    if spec is None:
        return None, 0.0
    if spec.get("splitter") != "koehn-knight" or spec.get("frequencies") != f"wordfreq {WORDFREQ} de":
        raise ValueError(
            f"the generation splits compounds with {spec.get('splitter')} over "
            f"{spec.get('frequencies')}, this install has koehn-knight over wordfreq {WORDFREQ} "
            "(its vectors would not match its queries): install that wordfreq or reindex")
    min_zipf = float(spec["min_zipf"])
    return (CompoundSplitter(german_frequencies(min_zipf), min_part=int(spec["min_part"]),
                             min_zipf=min_zipf), float(spec["weight"]))


def payload_text(payload: Mapping[str, Any]) -> str:
    """``project_text`` of a stored payload, tolerant of a missing field (an upstream event
    that left one out still gets its other words indexed)."""
    return TEXT_TEMPLATE.format(**{name: payload.get(name) or "" for name in
                                   ("name", "description", "project_type", "wood_type", "region")})


def terms(vector: qe.SparseVector) -> tuple[list[int], list[float]]:
    return list(vector.indices), [float(v) for v in vector.values]
