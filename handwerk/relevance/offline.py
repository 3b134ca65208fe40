"""A model's relevance on the benchmark without a service or an index: the corpus embedded
with the model, exact cosine top 10 in numpy, scored per class as ``handwerk eval`` scores a
service over HTTP.

This is what the model-switch gate compares (``handwerk.generations.quality``): the quality of
the *model*, independent of the user's data. The documents are embedded as the index embeds a
project (``project_text``), queries with the model's query side, and a query's filters are
applied as the index applies them (``judge.passes``), so the ``filtered`` class counts too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from handwerk.contract.text import project_text
from handwerk.relevance.corpus import DEFAULT_SEED, Corpus, build_corpus
from handwerk.relevance.judge import passes
from handwerk.relevance.metrics import K, score, summarize
from handwerk.relevance.queries import Query
from handwerk.relevance.queryset import all_queries, answerable

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Benchmark:
    """The corpus and the queries it can answer, with every query's grades and filter mask."""

    corpus: Corpus
    queries: tuple[Query, ...]

    @cached_property
    def documents(self) -> list[str]:
        return [project_text(p) for p in self.corpus.projects]

    @cached_property
    def query_texts(self) -> list[str]:
        return [q.text for q in self.queries]

    @cached_property
    def grades(self) -> npt.NDArray[np.int8]:
        """(queries, projects): the grade of every project for every query."""
        return np.array([self.corpus.grades(q.intent) for q in self.queries], dtype=np.int8)

    @cached_property
    def allowed(self) -> npt.NDArray[np.bool_]:
        """(queries, projects): what each query's filters let through."""
        return np.array([[passes(q.intent.filters, f) for f in self.corpus.facts]
                         for q in self.queries], dtype=np.bool_)

    @cached_property
    def fingerprint(self) -> str:
        """Changes with anything that changes a score: the embedded texts, the queries, the
        judging (grades, filters). A cached score is valid only for the same fingerprint."""
        digest = hashlib.sha256()
        for text in (*self.documents, "\x00", *self.query_texts):
            digest.update(text.encode() + b"\x00")
        digest.update(self.grades.tobytes())
        digest.update(np.packbits(self.allowed).tobytes())
        return f"{len(self.corpus)}:{digest.hexdigest()[:16]}"


def benchmark(size: int, seed: int = DEFAULT_SEED) -> Benchmark:
    """The first ``size`` projects of the deterministic corpus and every query it answers."""
    corpus = build_corpus(size, seed)
    kept, _ = answerable(all_queries(), corpus)
    return Benchmark(corpus, tuple(kept))


@dataclass(frozen=True)
class ModelScore:
    """nDCG@10 overall (every query weighs the same) and per class."""

    overall: float
    classes: Mapping[str, float]
    queries: int

    def to_json(self) -> dict[str, Any]:
        return {"overall": self.overall, "classes": dict(self.classes), "queries": self.queries}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ModelScore:
        return cls(float(document["overall"]),
                   {str(c): float(v) for c, v in document["classes"].items()},
                   int(document["queries"]))

    def __str__(self) -> str:
        return json.dumps(self.to_json())


def top_k(bench: Benchmark, documents: Vectors, queries: Vectors, k: int = K) -> list[list[int]]:
    """Each query's k nearest projects by cosine (exact), among those its filters allow."""
    def unit(m: Vectors) -> Vectors:
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        return np.asarray(m / np.where(norms == 0, 1, norms), dtype=np.float32)

    similarity = unit(queries) @ unit(documents).T
    similarity = np.where(bench.allowed, similarity, -np.inf)
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return [[int(i) for i in row if np.isfinite(similarity[q, i])]
            for q, row in enumerate(order)]


def score_model(bench: Benchmark, documents: Vectors, queries: Vectors) -> ModelScore:
    """Score a model from its vectors: ``documents`` row i is ``bench.documents[i]`` embedded
    as a document, ``queries`` row j is ``bench.query_texts[j]`` embedded as a query."""
    if documents.shape[0] != len(bench.documents) or queries.shape[0] != len(bench.queries):
        raise ValueError("one vector per benchmark document and per query is needed")
    scored = []
    for query, judged, found in zip(bench.queries, bench.grades.tolist(),
                                    top_k(bench, documents, queries), strict=True):
        result = score([judged[i] for i in found], judged)
        if result is not None:  # always: the benchmark holds answerable queries only
            scored.append((query.cls, result))
    table = summarize(scored)
    overall = table.pop("overall", {"ndcg@10": 0.0, "queries": 0})
    return ModelScore(float(overall["ndcg@10"]),
                      {c: float(row["ndcg@10"]) for c, row in table.items()},
                      int(overall["queries"]))
