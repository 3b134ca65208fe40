"""Keyword (BM25, German analysis) and hybrid search: one contract, both adapters, equal rankings.

The sparse vectors are computed in the application (``handwerk.index.keywords``) for both
backends, so Qdrant Edge and qdrant-client's local mode must rank alike, score for score.
(Exact ties are the exception: the engines order tied points differently, which moves a fused
rank score; the queries below have none.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from handwerk.index.catalog import AliasFolder, new_meta
from handwerk.index.edge.adapter import EdgeVectorIndex
from handwerk.index.keywords import Fusion, KeywordSearchUnavailable, default_keyword_spec
from handwerk.index.protocol import SearchFilters, Tombstone, UpsertPoint, VectorIndex
from handwerk.index.qdrant.adapter import QdrantServerIndex
from handwerk.index.qdrant.connection import QdrantConnection

DIM = 8
ANY = SearchFilters()
KINDS = ["edge", "qdrant-local"]

PROJECTS = [  # (description, project type, hot dimension of its dense vector)
    ("Einbauschränke aus Eiche unter der Dachschräge", "wardrobe", 0),
    ("Wendeltreppe aus Buche mit Glasgeländer", "stairs", 1),
    ("Einbauküche mit Kochinsel, Fronten aus Eiche", "kitchen", 2),
    ("Treppe aus Eiche mit Podest", "stairs", 3),
    ("Kleiderschrank aus Kiefer mit Schiebetüren", "wardrobe", 4),
    ("Badmöbel aus Teak, wasserfest lackiert", "bathroom", 5),
]


def pid(i: int) -> str:
    return str(uuid.UUID(int=i + 1))


def vec(*weights: tuple[int, float]) -> list[float]:
    v = [0.01] * DIM
    for i, w in weights:
        v[i] = w
    return v


def project_point(i: int, version: int = 1) -> UpsertPoint:
    description, kind, hot = PROJECTS[i]
    payload = {"name": description.split(" ")[0], "description": description,
               "project_type": kind, "wood_type": "", "region": "Bayern", "final_price": 1000.0 + i,
               "text_hash": f"h{i}", "source": "urn:handwerk:outbox", "version": version,
               "state": "live"}
    # a small distinct second component: no two projects tie on a dense score (the backends
    # break ties in different orders, which shifts a fused rank score)
    return UpsertPoint(pid(i), version, vec((hot, 1.0), ((hot + 1) % DIM, 0.03 * (i + 1))), payload)


def make_index(kind: str, folder: Path) -> VectorIndex:
    if kind == "edge":
        return EdgeVectorIndex(folder, "projects", model="test-model", dimension=DIM)
    return QdrantServerIndex(alias="projects", model="test-model", dimension=DIM,
                             connection=QdrantConnection(path=str(folder / "qdrant-local")),
                             folder=AliasFolder(folder, "projects"))


async def _filled(kind: str, folder: Path) -> VectorIndex:
    index = make_index(kind, folder)
    await index.open()
    await index.write([project_point(i) for i in range(len(PROJECTS))], [])
    return index


@pytest.fixture(params=KINDS)
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorIndex]:
    idx = await _filled(request.param, tmp_path)
    try:
        yield idx
    finally:
        await idx.close()


@pytest.fixture
async def both(tmp_path: Path) -> AsyncIterator[list[VectorIndex]]:
    indexes = [await _filled(kind, tmp_path / kind) for kind in KINDS]
    try:
        yield indexes
    finally:
        for idx in indexes:
            await idx.close()


def ids(hits: list) -> list[str]:  # type: ignore[type-arg]
    return [h.project_id for h in hits]


async def test_keyword_search_matches_german_word_forms(index: VectorIndex) -> None:
    assert index.supports_keywords
    # Snowball stemming: the singular finds the plural, "Eiche" the projects made of oak; the
    # compound's parts then find the other built-in ("Einbauküche") and the other "-schrank"
    assert ids(await index.search(None, top_k=5, threshold=0.0, filters=ANY,
                                  text="Einbauschrank")) == [pid(0), pid(2), pid(4)]
    assert set(ids(await index.search(None, top_k=5, threshold=0.0, filters=ANY,
                                      text="Eiche"))) == {pid(0), pid(2), pid(3)}
    # stopwords alone match nothing
    assert await index.search(None, top_k=5, threshold=0.0, filters=ANY, text="aus mit der") == []


async def test_keyword_search_keeps_filters_and_never_finds_tombstones(index: VectorIndex) -> None:
    stairs = SearchFilters(project_type="stairs")
    assert ids(await index.search(None, top_k=5, threshold=0.0, filters=stairs,
                                  text="Eiche")) == [pid(3)]
    await index.write([], [Tombstone(pid(3), 2)])
    assert pid(3) not in ids(await index.search(None, top_k=5, threshold=0.0, filters=ANY,
                                                text="Eiche Treppe"))
    # an update rewrites the keyword vector with the point
    changed = project_point(0, version=2)
    changed.payload.update(name="Sauna", description="Sauna aus Zirbe")
    await index.write([changed], [])
    assert pid(0) not in ids(await index.search(None, top_k=5, threshold=0.0, filters=ANY,
                                                text="Einbauschrank"))
    assert ids(await index.search(None, top_k=5, threshold=0.0, filters=ANY,
                                  text="Zirbe")) == [pid(0)]


async def test_hybrid_merges_both_rankings(index: VectorIndex) -> None:
    # the dense side prefers project 4, the keyword side project 1: both come first, ahead
    # of a project neither ranking holds high (no word here, nor part of one, is in project 3)
    dense = vec((4, 1.0), (1, 0.5))
    hits = await index.search(dense, top_k=6, threshold=0.0, filters=ANY,
                              text="Buche Glasgeländer", fusion=Fusion(k=2))
    assert set(ids(hits)[:2]) == {pid(1), pid(4)}
    weighted = await index.search(dense, top_k=6, threshold=0.0, filters=ANY,
                                  text="Buche Glasgeländer",
                                  fusion=Fusion(k=2, dense_weight=1.0, keyword_weight=3.0))
    assert ids(weighted)[0] == pid(1)
    # the threshold bounds the dense candidates only: keyword matches stay
    strict = await index.search(dense, top_k=6, threshold=0.99, filters=ANY,
                                text="Buche Glasgeländer", fusion=Fusion(k=2))
    assert ids(strict) == [pid(1)]
    # a hybrid hit carries its cosine to the query vector: what a dense search scores it
    dense_scores = {h.project_id: h.score for h in await index.search(
        dense, top_k=6, threshold=0.0, filters=ANY)}
    for hit in hits:
        assert hit.cosine is not None and abs(hit.cosine - dense_scores[hit.project_id]) < 1e-4
    batch = await index.search_batch([dense, vec((0, 1.0))], top_k=6, threshold=0.0, filters=ANY,
                                     texts=["Buche Glasgeländer", "Einbauschrank"],
                                     fusion=Fusion(k=2))
    assert ids(batch[0]) == ids(hits) and [h.cosine for h in batch[0]] == [h.cosine for h in hits]
    assert ids(batch[1])[0] == pid(0)


@pytest.mark.parametrize("query", [
    {"text": "Eiche Treppe"},
    {"text": "Einbauküche mit Kochinsel", "vector": vec((2, 1.0), (3, 0.4))},
    {"text": "Schrank", "vector": vec((4, 1.0)), "fusion": Fusion(method="dbsf")},
    {"text": "Treppe Buche", "vector": vec((3, 1.0)), "fusion": Fusion(k=10, dense_weight=2.0)},
])
async def test_both_backends_rank_alike(both: list[VectorIndex], query: dict) -> None:  # type: ignore[type-arg]
    results = [await idx.search(query.get("vector"), top_k=6, threshold=0.0, filters=ANY,
                                text=query["text"], fusion=query.get("fusion"))
               for idx in both]
    edge, local = results
    assert edge, "the query must find something"
    assert ids(edge) == ids(local)
    assert [round(h.score, 4) for h in edge] == [round(h.score, 4) for h in local]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_generation_without_keyword_vectors_refuses_keyword_search(
        kind: str, tmp_path: Path) -> None:
    """A generation built before keyword search existed records no analyzer: dense search goes
    on, keyword and hybrid are refused (never silently answered by dense alone)."""
    AliasFolder(tmp_path, "projects").write_meta(
        new_meta("g0001", "test-model", DIM, keywords=None))
    index = make_index(kind, tmp_path)
    await index.open()
    try:
        assert not index.supports_keywords
        await index.write([project_point(0)], [])
        assert ids(await index.search(vec((0, 1.0)), top_k=3, threshold=0.0, filters=ANY)) == [pid(0)]
        with pytest.raises(KeywordSearchUnavailable, match="handwerk reindex"):
            await index.search(None, top_k=3, threshold=0.0, filters=ANY, text="Eiche")
        with pytest.raises(KeywordSearchUnavailable):
            await index.search_batch([vec((0, 1.0))], top_k=3, threshold=0.0, filters=ANY,
                                     texts=["Eiche"])
    finally:
        await index.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_generation_recorded_without_compounds_keeps_them_whole(
        kind: str, tmp_path: Path) -> None:
    """A generation built before compound splitting records a spec without ``compounds``: its
    documents and its queries stay unsplit (its stored vectors and its queries agree)."""
    spec = {k: v for k, v in default_keyword_spec().items() if k != "compounds"}
    AliasFolder(tmp_path, "projects").write_meta(new_meta("g0001", "test-model", DIM, keywords=spec))
    index = await _filled(kind, tmp_path)
    try:
        assert ids(await index.search(None, top_k=5, threshold=0.0, filters=ANY,
                                      text="Einbauschrank")) == [pid(0)]
    finally:
        await index.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_keyword_vectors_survive_a_reopen(kind: str, tmp_path: Path) -> None:
    index = await _filled(kind, tmp_path)
    await index.close()
    again = make_index(kind, tmp_path)
    await again.open()
    try:
        assert again.supports_keywords
        # with the analyzer the generation recorded: "Treppe", a part, finds project 3 too
        assert ids(await again.search(None, top_k=5, threshold=0.0, filters=ANY,
                                      text="Wendeltreppe")) == [pid(1), pid(3)]
        # reads still give the dense vector alone
        assert len((await again.get_vectors([pid(1)]))[pid(1)]) == DIM
        records = await again.get_records([pid(1)])
        assert records[pid(1)].vector is not None and len(records[pid(1)].vector) == DIM
    finally:
        await again.close()


async def test_keyword_vectors_do_not_count_as_points_in_the_graph(index: VectorIndex) -> None:
    """The engines count sparse vectors as indexed the moment they are written; compaction and
    ``status`` read ``indexed_vectors_count`` as the dense points inside the HNSW graph, so
    keyword vectors must not inflate it (a fresh small shard has none in the graph)."""
    stats = await index.stats()
    assert stats.vectors_count == len(PROJECTS)
    assert stats.indexed_vectors_count == 0
    assert stats.status != "green" or index.backend != "qdrant-edge"
