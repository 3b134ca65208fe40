"""The one place that sorts failures into "a dependency is down" and "this record is bad".

Transient (back off, keep the offsets, resume by itself): the index, the embedder or the
broker failed for a reason that is not the input. Poison (isolate, dead-letter alone, go on):
the input itself can never be applied. Anything not known to be about the input counts as
transient: a good event must never be dead-lettered because a dependency failed; an unknown
failure stalls the partition visibly (readiness turns red) instead of losing events.
"""

from __future__ import annotations

from enum import Enum

from aiokafka.errors import KafkaError

from handwerk.contract.events import InvalidEvent
from handwerk.embedding.errors import EmbedderUnavailable
from handwerk.index.protocol import IndexRejected, IndexUnavailable


class Failure(Enum):
    TRANSIENT = "transient"
    POISON = "poison"


# Errors our own code raises when it processes a record's content (bad data, not a bad day).
_POISON = (IndexRejected, InvalidEvent, ValueError, TypeError, KeyError, AttributeError,
           RecursionError, OverflowError, UnicodeError)


def classify(error: BaseException) -> Failure:
    if isinstance(error, _POISON):
        return Failure.POISON
    return Failure.TRANSIENT


def dependency_of(error: BaseException) -> str:
    """Which dependency a transient failure belongs to (a metric label)."""
    if isinstance(error, IndexUnavailable):
        return "index"
    if isinstance(error, EmbedderUnavailable):
        return "embedder"
    if isinstance(error, KafkaError):
        return "broker"
    return "unknown"
