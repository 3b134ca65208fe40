"""The micro-batch gather waits for more records only while the broker reported more queued
(a lone write is applied at once; a backlog still fills the batch). A fake consumer counts the
fetches, so nothing here depends on timing."""

from __future__ import annotations

import time
from pathlib import Path

from aiokafka import ConsumerRecord, TopicPartition

from handwerk.consumer.worker import IndexingConsumer
from handwerk.metrics import Metrics
from handwerk.settings import Settings

TP = TopicPartition("handwerk.projects", 0)


def _record(offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(TP.topic, TP.partition, offset, int(time.time() * 1000), 0, b"k",
                          b"{}", None, 1, 2, [])


class FakeConsumer:
    """Hands out the given fetches in order; ``highwater`` is what the last fetch reported."""

    def __init__(self, fetches: list[list[int]], highwater: int | None) -> None:
        self._fetches = fetches
        self._highwater = highwater
        self.position_ = 0
        self.fetches = 0

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None,
                      ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        self.fetches += 1
        if not self._fetches:
            return {}
        offsets = self._fetches.pop(0)
        self.position_ = offsets[-1] + 1
        return {TP: [_record(o) for o in offsets]}

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._highwater

    async def position(self, tp: TopicPartition) -> int:
        return self.position_


def _worker(tmp_path: Path) -> IndexingConsumer:
    # a gather window far longer than any test: only the broker's figures can end it early
    settings = Settings(data_dir=tmp_path, batch_max_wait_ms=600_000)
    worker = IndexingConsumer(settings, applier=None, metrics=Metrics())  # type: ignore[arg-type]
    worker.assigned = {TP}
    return worker


async def test_nothing_more_queued_means_no_wait(tmp_path: Path) -> None:
    consumer = FakeConsumer([[0], [1]], highwater=1)
    records = await _worker(tmp_path)._fetch(consumer)  # type: ignore[arg-type]
    assert [r.offset for r in records] == [0]
    assert consumer.fetches == 1


async def test_a_backlog_fills_the_batch(tmp_path: Path) -> None:
    consumer = FakeConsumer([[0, 1], [2, 3], [4]], highwater=5)
    records = await _worker(tmp_path)._fetch(consumer)  # type: ignore[arg-type]
    assert [r.offset for r in records] == [0, 1, 2, 3, 4]
    assert consumer.fetches == 3  # stopped once the position reached the high watermark


async def test_unknown_high_watermark_gathers_as_before(tmp_path: Path) -> None:
    consumer = FakeConsumer([[0], [1]], highwater=None)
    records = await _worker(tmp_path)._fetch(consumer)  # type: ignore[arg-type]
    assert [r.offset for r in records] == [0, 1]
    assert consumer.fetches == 3  # the third fetch came back empty and ended the gather
