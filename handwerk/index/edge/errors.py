"""What the qdrant_edge binding raises, as the two errors the pipeline knows.

The binding (qdrant-edge-py 0.9.0) has no exception classes of its own: an engine
error arrives as a plain ``Exception`` whose text is Qdrant's ``OperationError`` message
("Service runtime error: failed to open WAL ...", "Vector dimension error: expected dim: 4,
got 2"), and an argument it cannot convert raises ``TypeError``/``ValueError`` (an id that is
not a UUID, a payload value that is not JSON). Every method the pipeline calls turns them
into exactly two kinds, once, here:

- ``IndexRejected`` (permanent for this input): ``TypeError``/``ValueError`` from the binding,
  and engine errors whose kind describes the request itself (wrong vector dimension, wrong
  input, validation failed, payload type mismatch). Ids and vectors are checked before the
  engine sees them (``validation.py``), so these name the project; the message-kind match
  is only the fallback for what the checks cannot know, because the binding offers nothing
  but the text.
- ``IndexUnavailable`` (transient) for everything else: I/O and WAL failures ("Service
  runtime error"), a shard that is closed, out of memory, timeouts. Retrying those later can
  succeed; dead-lettering them would drop good events.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from handwerk.index.protocol import IndexRejected, IndexUnavailable

# Kinds of Qdrant OperationError (their Display prefix: the binding passes nothing else)
# that describe the request rather than the engine's health.
_REQUEST_ERROR_KINDS = (
    "Wrong input", "Bad input", "Bad request", "Vector dimension error", "Validation failed",
    "Not existing vector name", "Payload type does not match", "Unable to infer type",
    "Wrong usage of",
)


def classify(error: Exception, what: str) -> IndexRejected | IndexUnavailable:
    """The adapter's error for an exception raised by the qdrant_edge binding."""
    if isinstance(error, (IndexRejected, IndexUnavailable)):
        return error
    if isinstance(error, (TypeError, ValueError)) or str(error).startswith(_REQUEST_ERROR_KINDS):
        return IndexRejected(f"Qdrant Edge refused {what}: {error}")
    return IndexUnavailable(f"Qdrant Edge {what} failed: {type(error).__name__}: {error}")


@contextmanager
def engine_errors(what: str) -> Iterator[None]:
    """Re-raise what the binding raises inside the block as ``classify`` says."""
    try:
        yield
    except (IndexRejected, IndexUnavailable):
        raise
    except Exception as e:  # the binding raises plain exceptions
        raise classify(e, what) from e
