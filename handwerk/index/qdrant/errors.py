"""What qdrant-client and a Qdrant server raise, as the two errors the pipeline knows.

Every adapter and catalog method the pipeline calls raises only ``IndexUnavailable`` or
``IndexRejected`` for what the client or the server raised (``classify``):

- ``IndexRejected`` (permanent for this input): an HTTP 4xx that is about the request (400
  bad request or wrong vector size, 409, 413, 422, ...), and ``ValueError``/``TypeError``
  raised before anything was sent (pydantic validation of the request; local mode reports
  invalid input this way too). Ids and vectors are checked first (``validation.py``).
- ``IndexUnavailable`` (transient) for the rest: no connection, timeouts, 5xx, 408 and 429,
  and also 401, 403 and 404: a wrong API key or a collection/alias that is missing is an
  operator's problem, not the record's; dead-lettering every event until someone fixes it
  would lose them all, retrying loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from handwerk.index.protocol import IndexMismatch, IndexRejected, IndexUnavailable

# 4xx statuses that are not the request's fault: retry instead of dead-lettering.
_NOT_THE_REQUEST = {401, 403, 404, 408, 429}


def classify(error: Exception, what: str) -> IndexRejected | IndexUnavailable:
    """The adapter's error for an exception raised by qdrant-client."""
    if isinstance(error, (IndexRejected, IndexUnavailable)):
        return error
    if isinstance(error, UnexpectedResponse):
        status = error.status_code
        detail = server_message(error)
        if status is not None and 400 <= status < 500 and status not in _NOT_THE_REQUEST:
            return IndexRejected(f"Qdrant refused {what} (HTTP {status}): {detail}")
        return IndexUnavailable(f"Qdrant {what} failed (HTTP {status}): {detail}")
    if isinstance(error, ResponseHandlingException):
        return IndexUnavailable(f"Qdrant {what} failed: {type(error.source).__name__}: {error.source}")
    if isinstance(error, (ValueError, TypeError)):
        return IndexRejected(f"Qdrant refused {what}: {error}")
    return IndexUnavailable(f"Qdrant {what} failed: {type(error).__name__}: {error}")


def server_message(error: UnexpectedResponse) -> str:
    """The server's own error text, or what the response offers instead."""
    try:
        return str(error.structured()["status"]["error"])
    except Exception:  # not Qdrant's JSON error shape (a proxy's page, an empty body)
        return error.reason_phrase or error.content[:200].decode(errors="replace")


@contextmanager
def client_errors(what: str) -> Iterator[None]:
    """Re-raise what the client raises inside the block as ``classify`` says (the index's
    own errors pass through unchanged)."""
    try:
        yield
    except (IndexRejected, IndexUnavailable, IndexMismatch):
        raise
    except Exception as e:
        raise classify(e, what) from e
