"""Does German compound splitting help keyword and hybrid search? An experiment (issue 20).

    python -m tooling.relevance.compounds --data-dir DIR [--model e5] [--json out.json]
        [--parts-weight 0.5] [--split-avg-len 32] [--min-part 4] [--min-zipf 3]

The splitter is ``handwerk.index.compounds`` (Koehn & Knight 2003 over wordfreq's German
frequencies; "Eichenholztreppe" also gives "eichenholz", "eiche", "holz", "treppe"). The parts
go in either inline, as more words of the text (no ``--parts-weight``), or as a second sparse
vector at ``--parts-weight`` added to the text's, which is what ``KeywordAnalyzer`` does for a
generation whose spec records ``compounds``. Here the sides vary: documents, queries, both.

What it measures, in process, without touching the data folder: the folder is copied, its
stored points (dense vectors and payloads) are read back and written to two fresh Qdrant Edge
shards in a temporary folder, one with plain and one with split documents, and each is
queried with plain and with split queries, in keyword mode and in hybrid mode (DBSF over 100
candidates a side, the service's default), scored like ``tune`` (nDCG@10 per class). Then the
analyzer's cost per document and per query, with and without splitting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import qdrant_edge as qe

from handwerk.embedding.loading import load_embedder
from handwerk.index.compounds import CompoundSplitter, german_frequencies
from handwerk.index.edge.adapter import EdgeVectorIndex
from handwerk.index.keywords import Fusion, KeywordAnalyzer, default_keyword_spec, payload_text
from handwerk.index.protocol import StoredPoint, UpsertPoint
from handwerk.relevance.corpus import DEFAULT_SEED, build_corpus
from handwerk.relevance.queryset import all_queries, answerable
from handwerk.settings import Settings
from tooling.relevance.tune import score_variant

MIN_PART = 4
MIN_ZIPF = 3.0
HYBRID = Fusion("dbsf", prefetch=100)


def german_splitter(min_part: int = MIN_PART, min_zipf: float = MIN_ZIPF) -> CompoundSplitter:
    return CompoundSplitter(german_frequencies(min_zipf), min_part=min_part, min_zipf=min_zipf)


def plain_spec() -> dict[str, Any]:
    """The default analyzer without its own compound splitting (this experiment adds it)."""
    return {k: v for k, v in default_keyword_spec().items() if k != "compounds"}


def expand(splitter: CompoundSplitter, text: str) -> str:
    """The text, then the parts of its compounds (the inline variant: parts as more words)."""
    parts = splitter.parts(text)
    return f"{text} {' '.join(parts)}" if parts else text


def _merge(base: qe.SparseVector, extra: qe.SparseVector, weight: float) -> qe.SparseVector:
    values = dict(zip(base.indices, base.values, strict=True))
    for index, value in zip(extra.indices, extra.values, strict=True):
        values[index] = values.get(index, 0.0) + weight * value
    ordered = sorted(values)
    return qe.SparseVector(indices=ordered, values=[values[i] for i in ordered])


class SplittingAnalyzer(KeywordAnalyzer):
    """The generation's BM25 analyzer with compound parts added on one side or both:
    inline (``parts_weight`` None: the parts are more words of the text) or as a second
    vector of their own, weighted and added to the text's."""

    def __init__(self, spec: Mapping[str, Any], splitter: CompoundSplitter, *,
                 documents: bool, queries: bool, parts_weight: float | None = None) -> None:
        super().__init__(spec)  # a spec without "compounds": the base class does not split
        # own names: the base class's _splitter and _parts_weight must stay None and unused
        self._extra, self.documents, self.queries = splitter, documents, queries
        self._extra_weight = parts_weight

    def _embed(self, text: str, embed: Any) -> qe.SparseVector:
        if self._extra_weight is None:
            return cast(qe.SparseVector, embed(expand(self._extra, text)))
        parts = self._extra.parts(text)
        whole = cast(qe.SparseVector, embed(text))
        return _merge(whole, embed(" ".join(parts)), self._extra_weight) if parts else whole

    def document(self, payload: Mapping[str, Any]) -> qe.SparseVector | None:
        if not self.documents:
            return super().document(payload)
        if payload.get("state") == "deleted" or "description" not in payload:
            return None
        return self._embed(payload_text(payload), self._bm25.embed_document)

    def query(self, text: str) -> qe.SparseVector:
        return self._embed(text, self._bm25.embed_query) if self.queries else super().query(text)


async def _stored_points(data_dir: Path, model: str, dimension: int) -> list[StoredPoint]:
    settings = Settings(data_dir=data_dir)
    source = EdgeVectorIndex(settings.index_dir, settings.index.alias, model=model,
                             dimension=dimension)
    await source.open()
    try:
        return [p async for page in source.iter_points() for p in page]
    finally:
        await source.close()


async def _experiment(data_dir: Path, model: str | None, size: int,
                      splitter: CompoundSplitter, split_avg_len: float | None,
                      parts_weight: float | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="compounds-") as tmp:
        copy = Path(tmp) / "data"
        shutil.copytree(data_dir, copy, ignore=shutil.ignore_patterns("*.lock"))
        settings = Settings(data_dir=copy)
        embedder = load_embedder(settings, model)
        corpus = build_corpus(size, DEFAULT_SEED)
        queries, _ = answerable(all_queries(), corpus)
        vectors = [v.tolist() for v in await embedder.embed_queries([q.text for q in queries])]
        points = await _stored_points(copy, embedder.model_name, embedder.dimension)
        live = [p for p in points if not p.deleted and p.vector is not None]
        table: dict[str, Any] = {}
        for split_documents in (False, True):
            spec = plain_spec()
            assert "compounds" not in spec
            if split_documents and split_avg_len is not None:
                spec["avg_len"] = split_avg_len  # the parts make documents longer
            index = EdgeVectorIndex(Path(tmp) / f"split-docs-{split_documents}", "exp",
                                    model=embedder.model_name, dimension=embedder.dimension,
                                    generation="g0001")
            await index.open()
            try:
                # the analyzer is the generation's (read at open): swapped in for the experiment
                index._keywords = SplittingAnalyzer(spec, splitter, documents=split_documents,
                                                    queries=False, parts_weight=parts_weight)
                await index.write([UpsertPoint(p.project_id, int(p.payload["version"]),
                                               p.vector or [], p.payload) for p in live], [])
                if not split_documents:
                    table["dense"] = await score_variant(index, corpus, queries, vectors,
                                                         "dense", None)
                    print("dense", table["dense"], flush=True)
                for split_queries in (False, True):
                    index._keywords = SplittingAnalyzer(spec, splitter, documents=split_documents,
                                                        queries=split_queries,
                                                        parts_weight=parts_weight)
                    sides = {(False, False): "no split", (True, False): "split docs",
                             (False, True): "split queries", (True, True): "split both"}
                    side = sides[(split_documents, split_queries)]
                    for mode, fusion in (("keyword", None), ("hybrid", HYBRID)):
                        name = f"{mode} {side}"
                        table[name] = await score_variant(index, corpus, queries, vectors,
                                                          mode, fusion)
                        print(name, table[name], flush=True)
            finally:
                await index.close()
        # and as the service builds a new generation: the analyzer its default spec records
        index = EdgeVectorIndex(Path(tmp) / "default-spec", "exp", model=embedder.model_name,
                                dimension=embedder.dimension, generation="g0001")
        await index.open()
        try:
            await index.write([UpsertPoint(p.project_id, int(p.payload["version"]),
                                           p.vector or [], p.payload) for p in live], [])
            for mode, fusion in (("keyword", None), ("hybrid", HYBRID)):
                name = f"{mode} default spec"
                table[name] = await score_variant(index, corpus, queries, vectors, mode, fusion)
                print(name, table[name], flush=True)
        finally:
            await index.close()
        embedder.close()
    return {"model": embedder.model_name, "queries": len(queries), "projects": len(live),
            "hybrid": "dbsf p=100", "split_avg_len": split_avg_len,
            "parts_weight": parts_weight, "ndcg_at_10": table,
            "cost": _cost([p.payload for p in live], [q.text for q in queries])}


def _cost(payloads: list[dict[str, Any]], texts: list[str]) -> dict[str, float]:
    """Median µs per document and per query of ``KeywordAnalyzer`` without compounds in its
    spec and with the default spec (splitting; its word cache warm: a word is split once per
    analyzer), and the mean of a first, cold pass over the documents."""
    spec = default_keyword_spec()
    plain = KeywordAnalyzer(plain_spec())
    german_frequencies(float(spec["compounds"]["min_zipf"]))  # loaded once per process
    split = KeywordAnalyzer(spec)
    started = time.perf_counter()
    for payload in payloads:
        split.document(payload)
    cold = (time.perf_counter() - started) * 1e6 / len(payloads)

    def median_us(call: Any, items: list[Any]) -> float:
        times = []
        for item in items:
            started = time.perf_counter()
            call(item)
            times.append((time.perf_counter() - started) * 1e6)
        return round(statistics.median(times), 1)

    return {"document_us_plain": median_us(plain.document, payloads),
            "document_us_split": median_us(split.document, payloads),
            "document_us_split_cold_mean": round(cold, 1),
            "query_us_plain": median_us(plain.query, texts),
            "query_us_split": median_us(split.query, texts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--min-part", type=int, default=MIN_PART)
    parser.add_argument("--min-zipf", type=float, default=MIN_ZIPF)
    parser.add_argument("--split-avg-len", type=float, default=None,
                        help="BM25 avg_len for split documents (default: the plain one)")
    parser.add_argument("--parts-weight", type=float, default=None,
                        help="the parts as a second vector of this weight (default: inline)")
    args = parser.parse_args()
    started = time.perf_counter()
    splitter = german_splitter(args.min_part, args.min_zipf)
    print(f"splitter loaded in {time.perf_counter() - started:.2f} s", flush=True)
    for example in ("Eichenholztreppe", "Holztreppe aus Eiche", "Eichentreppe",
                    "Glasgeländer", "Dreifachverglasung", "Kirschbaumholzküche"):
        print(f"{example} -> {splitter.parts(example)}")
    document = asyncio.run(_experiment(args.data_dir, args.model, args.projects, splitter,
                                          args.split_avg_len, args.parts_weight))
    print(json.dumps(document["cost"]), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
