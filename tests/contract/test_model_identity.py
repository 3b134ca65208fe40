"""A model's identity is the content of its files, not the folder it lives in (issue 19 #4).

New weights in the same folder are another model: they must get another key, the vectors the
old weights made must not be reused (vector cache, donor), the quality gate must run and the
live embedder must not be kept. A generation built before keys were recorded has no key and
counts as another model too (one re-embed, never a wrong vector). Real prepare, builder and
handover steps, real Qdrant Edge, a tiny random model on the onnx backend; only the topic is
a stand-in."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from handwerk.consumer.applier import ApplyResult, IndexApplier
from handwerk.contract.events import UPSERTED, ProjectEvent
from handwerk.contract.text import project_text
from handwerk.embedding.embedder import Embedder
from handwerk.generations import builder, handover, prepare
from handwerk.generations.handover import Handover
from handwerk.generations.jobs import HandoverRefused, ReindexJob
from handwerk.generations.upkeep import CompactionBaseline
from handwerk.index.active import ActiveIndex, IndexTarget
from handwerk.index.catalog import GenerationCatalog, GenerationMeta, new_meta
from handwerk.index.factory import open_catalog
from handwerk.index.protocol import VectorIndex
from handwerk.metrics import Metrics
from handwerk.settings import Settings
from tests.models import tiny_model

ALIAS = "projects"
WEIGHTS = "model.safetensors"
TEXTS = ["Landhausküche mit Kochinsel", "Wangentreppe aus Eiche", "Einbauschrank unter der Dachschräge"]


def load(folder: Path, cache: Path) -> Embedder:
    embedder = Embedder(folder, cache_dir=cache, threads=1)
    embedder.load()
    return embedder


def new_weights(folder: Path, seed: int) -> None:
    """Other weights into the same file, same size, and its old modification time kept (as
    ``cp -p``, rsync -t or an image layer would): only the content tells them apart."""
    before = (folder / WEIGHTS).stat()
    tiny_model(folder, seed)
    os.utime(folder / WEIGHTS, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = (folder / WEIGHTS).stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def event(pid: str, version: int, description: str) -> ProjectEvent:
    return ProjectEvent(str(uuid.uuid4()), "urn:handwerk:outbox", UPSERTED, pid, version,
                        datetime.now(UTC),
                        {"id": pid, "name": "Projekt", "description": description,
                         "project_type": "kitchen", "region": "Bayern", "total_area_sqm": 12.0,
                         "wood_type": "Eiche", "complexity": 2, "final_price": 1000.0})


class Topic:
    """Stands in for the topic a builder or a catch-up replays: applies ``events`` once and
    keeps the result."""

    def __init__(self, events: list[ProjectEvent]) -> None:
        self.events, self.results = events, list[ApplyResult]()

    async def __call__(self, _settings: Settings, applier: IndexApplier, *,
                       start: dict[int, int] | None, until: dict[int, int],
                       on_progress: Any = None) -> dict[int, int]:
        self.results.append(await applier.apply(self.events))
        return until


def test_new_weights_in_the_same_folder_are_another_model(tmp_path: Path) -> None:
    folder, cache = tiny_model(tmp_path / "tiny", seed=1), tmp_path / "cache"
    first = load(folder, cache)
    new_weights(folder, seed=2)
    second = load(folder, cache)
    try:
        assert first.model_name == second.model_name == str(folder.resolve())  # the name stays
        # the new weights run (not a stale ONNX export of the old ones) ...
        assert not np.allclose(first.encode(TEXTS), second.encode(TEXTS), atol=1e-3)
        # ... and are another model
        assert first.content_key != second.content_key
        assert first.content_key.startswith("sha256:")
        from handwerk.embedding.specs import content_key, model_key, resolve_model

        assert content_key(resolve_model(str(folder))) == second.content_key
        assert model_key(first.content_key, 32) != model_key(second.content_key, 32)
        # a name is keyed by what its files hold now
        assert model_key(first.model_name, 32) == model_key(second.content_key, 32)
    finally:
        first.close()
        second.close()


def test_the_key_is_computed_once_per_process_and_follows_the_files(tmp_path: Path) -> None:
    from handwerk.embedding.specs import bundled_model_path, content_key, resolve_model

    folder = tiny_model(tmp_path / "tiny", seed=1)
    spec = resolve_model(str(folder))
    key = content_key(spec)
    started = time.perf_counter()
    assert content_key(spec) == key  # cached: the files are unchanged
    assert time.perf_counter() - started < 0.05
    new_weights(folder, seed=2)
    assert content_key(spec) != key
    # the bundled model and the packaged e5 have keys of their own
    bundled = content_key(resolve_model(None))
    assert bundled.startswith("sha256:") and bundled == content_key(resolve_model(
        str(bundled_model_path())))
    assert content_key(resolve_model("e5")) not in (bundled, key)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", index_alias=ALIAS)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tiny_model(tmp_path / "tiny", seed=1)


@pytest.fixture
def embedders() -> Iterator[list[Embedder]]:
    """Every embedder a test loads, closed at its end."""
    loaded: list[Embedder] = []
    yield loaded
    for embedder in loaded:
        embedder.close()


async def build(settings: Settings, catalog: GenerationCatalog, generation: str, model: str,
                current: Any, topic: Topic, monkeypatch: pytest.MonkeyPatch,
                loader: Any, *, reuse: bool) -> GenerationMeta:
    """prepare + builder, as a reindex from the topic runs them."""
    monkeypatch.setattr(prepare, "read_position", _position)
    monkeypatch.setattr(builder, "replay", topic)
    monkeypatch.setattr(builder, "load_embedder", lambda _s, name, **_: loader())
    job = ReindexJob(kind="reindex", source="topic", model=model, generation=generation,
                     reuse_vectors=reuse)
    catalog.folder.write_meta(new_meta(generation, model, 0, state="building", source="topic"))
    gdir = catalog.folder.generation_dir(generation)
    await prepare.prepare(job, gdir, current, settings, None)  # type: ignore[arg-type]
    await builder.build(settings, gdir)
    meta = catalog.folder.read_meta(generation)
    assert meta is not None and meta.state == "ready"
    return meta


async def _position(_settings: Settings) -> Any:
    from handwerk.generations.replay import TopicPosition

    return TopicPosition({0: 3}, {0: 3})


@pytest.mark.parametrize("case", ["same weights", "new weights", "built before keys"])
async def test_a_rebuild_reuses_vectors_and_skips_the_gate_only_for_the_same_weights(
        case: str, settings: Settings, folder: Path, tmp_path: Path,
        embedders: list[Embedder], monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "onnx-cache"

    def loader() -> Embedder:
        embedders.append(load(folder, cache))
        return embedders[-1]

    catalog = open_catalog(settings)
    spec = str(folder)
    pids = [str(uuid.uuid4()) for _ in TEXTS]
    events = [event(p, 1, t) for p, t in zip(pids, TEXTS, strict=True)]

    # g0001: the live generation, built with the first weights
    nothing_live = SimpleNamespace(embedder=SimpleNamespace(model_name=spec),
                                   refuse_creations_before=None)
    await build(settings, catalog, "g0001", spec, nothing_live, Topic(events), monkeypatch,
                loader, reuse=False)
    await catalog.activate("g0001")
    meta_path = catalog.folder.generation_dir("g0001") / "meta.json"
    if case == "built before keys":  # what a data folder from before this change holds
        document = json.loads(meta_path.read_text())
        document.pop("content_key", None)
        meta_path.write_text(json.dumps(document))
    live_meta = catalog.folder.read_meta("g0001")
    assert live_meta is not None
    serving = loader()
    live_index: VectorIndex = catalog.index("g0001", model=serving.model_name,
                                            dimension=serving.dimension)
    await live_index.open()
    live = IndexTarget("g0001", live_index, serving, live_meta.with_(state="active"))
    target: IndexTarget | None = None
    try:
        if case == "new weights":
            new_weights(folder, seed=2)

        # g0002: a rebuild with the same model spec, vectors reused where allowed
        rebuilt = Topic(events)
        meta = await build(settings, catalog, "g0002", spec, live, rebuilt, monkeypatch, loader,
                           reuse=True)
        same = case == "same weights"
        (result,) = rebuilt.results
        assert (result.reused, result.embedded) == ((3, 0) if same else (0, 3)), case
        assert meta.model == spec == live_meta.model  # the name a person reads stays the spec

        # the handover: the new generation's embedder, the catch-up's donor, the gate
        active = ActiveIndex(live)
        switch = Handover(settings, catalog, active, Metrics(), lambda _model: loader(),
                          CompactionBaseline())
        target = await switch._open(meta)  # noqa: SLF001
        assert (target.embedder is serving) == (case != "new weights"), case

        late = str(uuid.uuid4())  # written to the live generation during the build
        await IndexApplier(live_index, serving, Metrics()).apply([event(late, 1, TEXTS[0])])
        catch_up = Topic([event(late, 1, TEXTS[0])])
        monkeypatch.setattr(handover, "replay", catch_up)
        await switch._catch_up(target, {0: 3}, {0: 4})  # noqa: SLF001
        (caught,) = catch_up.results
        assert (caught.reused, caught.embedded) == ((1, 0) if same else (0, 1)), case
        stored = np.array((await target.index.get_vectors([late]))[late])
        made = target.embedder.encode([project_text(catch_up.events[0].data or {})])[0]
        assert float(stored @ made) == pytest.approx(1.0, abs=1e-4), case  # the target's weights

        # the quality gate (both models on the relevance benchmark) runs for other weights only;
        # whether two random tiny models pass it is chance, that it ran is not
        job = ReindexJob(kind="reindex", source="topic", model=spec, generation="g0002")
        try:
            await switch._gates(job, target, force=False)  # noqa: SLF001
        except HandoverRefused as refused:
            assert not same and "nDCG@10" in str(refused), case
        assert ("ndcg_at_10" in job.figures) == (not same), (case, job.figures)
        assert ("agreement_at_10" in job.figures) == (not same), case
    finally:
        if target is not None:
            await target.index.close()
        await live_index.close()


class Weights:
    """Stands in for an embedder where only its identity matters."""

    def __init__(self, key: str) -> None:
        self.model_name, self.dimension, self.content_key, self.closed = "m", 4, key, False

    async def aclose(self) -> None:
        self.closed = True


async def test_a_generation_whose_weights_are_gone_is_not_switched_to(settings: Settings) -> None:
    """A rollback to a generation built from weights its model's files no longer hold: its
    queries could only embed with other weights than its vectors, so the handover refuses
    (and closes the embedder it loaded to check)."""
    serving, loaded = Weights("sha256:serving"), Weights("sha256:files-now")
    active = ActiveIndex(IndexTarget("g0003", SimpleNamespace(backend="x"), serving))  # type: ignore[arg-type]
    switch = Handover(settings, open_catalog(settings), active, Metrics(), lambda _m: loaded,
                      CompactionBaseline())
    retired = new_meta("g0001", "m", 4, state="retired", content_key="sha256:gone")
    with pytest.raises(HandoverRefused, match="other weights"):
        await switch._open(retired)  # noqa: SLF001
    assert loaded.closed and not serving.closed
