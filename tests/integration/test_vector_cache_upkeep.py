"""The generations' upkeep keeps the vector cache to what a generation can use: once a retired
generation is dropped, the vectors of its model go, and the file shrinks; those of the live
and of a retained generation stay. Real Qdrant Edge catalog and SQLite file, tiny vectors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from handwerk.embedding.specs import model_key
from handwerk.embedding.vector_cache import VectorCache, file_bytes
from handwerk.generations.manager import ReindexManager
from handwerk.index.active import ActiveIndex, IndexTarget
from handwerk.index.catalog import new_meta
from handwerk.index.edge.catalog import EdgeCatalog
from handwerk.settings import Settings

pytestmark = pytest.mark.integration

DIM, ALIAS = 64, "projects"


def vectors(n: int, seed: int) -> list[tuple[str, np.ndarray]]:
    data = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return [(f"h{i}", data[i]) for i in range(n)]


async def test_upkeep_prunes_the_vectors_of_dropped_generations(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, generation_grace_s=60)
    catalog = EdgeCatalog(tmp_path, ALIAS)
    live = catalog.index("g0001", model="m-live", dimension=DIM)
    await live.open()
    catalog.folder.write_meta(new_meta("g0001", "m-live", DIM, content_key="sha256:live"))
    long_ago = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    just_now = datetime.now(UTC).isoformat()
    for name, key, retired in (("g0002", "sha256:old", long_ago),
                               ("g0003", "sha256:recent", just_now)):
        catalog.folder.write_meta(new_meta(name, f"m-{name}", DIM, content_key=key,
                                           state="retired", retired_at=retired))
        (catalog.folder.generation_dir(name) / "shard").mkdir(parents=True)
    keys = {name: model_key(f"sha256:{name}", DIM) for name in ("live", "old", "recent", "gone")}
    with VectorCache(settings.vector_cache_path) as cache:
        for seed, key in enumerate(keys.values()):
            for start in range(0, 4000, 1000):
                cache.put_many(key, [(f"{start}-{h}", v)
                                     for h, v in vectors(1000, seed * 10 + start)])
        cache.checkpoint()
    before = file_bytes(settings.vector_cache_path)

    model = SimpleNamespace(model_name="m-live", dimension=DIM, content_key="sha256:live")
    active = ActiveIndex(IndexTarget("g0001", live, model))  # type: ignore[arg-type]
    manager = ReindexManager(settings, catalog, active, None, SimpleNamespace(),  # type: ignore[arg-type]
                             None)
    try:
        await manager.clean_up()
        assert set(catalog.folder.names()) == {"g0001", "g0003"}
        with VectorCache(settings.vector_cache_path) as cache:
            counts = {name: cache.count(key) for name, key in keys.items()}
        assert counts == {"live": 4000, "recent": 4000, "old": 0, "gone": 0}
        after = file_bytes(settings.vector_cache_path)
        assert after < 0.6 * before, (after, before)
    finally:
        await live.close()


async def test_upkeep_removes_the_export_a_finished_build_read(tmp_path: Path) -> None:
    """The copy of the old live generation a build starts from (``export.sqlite``) is spent
    once the build finished: it goes from the new generation's folder, live or not; a build
    still running keeps it."""
    import asyncio

    from handwerk.generations.export import EXPORT

    settings = Settings(data_dir=tmp_path, generation_grace_s=3600)
    catalog = EdgeCatalog(tmp_path, ALIAS)
    live = catalog.index("g0001", model="m", dimension=DIM)
    await live.open()
    catalog.folder.write_meta(new_meta("g0001", "m", DIM, content_key="sha256:m"))
    catalog.folder.write_meta(new_meta("g0002", "m", DIM, content_key="sha256:m", state="ready",
                                       ready_at=datetime.now(UTC).isoformat()))
    catalog.folder.write_meta(new_meta("g0003", "m", DIM, state="building"))
    exports = {g: catalog.folder.generation_dir(g) / EXPORT for g in ("g0001", "g0002", "g0003")}
    for path in exports.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 100_000)
    model = SimpleNamespace(model_name="m", dimension=DIM, content_key="sha256:m")
    active = ActiveIndex(IndexTarget("g0001", live, model))  # type: ignore[arg-type]
    manager = ReindexManager(settings, catalog, active, None, SimpleNamespace(),  # type: ignore[arg-type]
                             None)
    manager.job = SimpleNamespace(generation="g0003")  # type: ignore[assignment]
    manager._task = asyncio.get_running_loop().create_future()  # noqa: SLF001 - a build runs
    try:
        await manager.clean_up()
        assert {g for g, path in exports.items() if path.exists()} == {"g0003"}
    finally:
        manager._task.cancel()  # noqa: SLF001
        await asyncio.gather(manager._task, return_exceptions=True)  # noqa: SLF001
        await live.close()
