"""Hand freed heap back to the operating system.

glibc keeps memory that Python, ONNX Runtime and the Qdrant engine freed in its arenas, so a
closed generation or an export's pages still count in the serving process's RSS until
``malloc_trim`` returns them. It locks each arena while it walks it (other threads' mallocs
may wait milliseconds), so it runs only after rare events: a generation closed, a compaction's
export. Elsewhere (musl, macOS: no ``malloc_trim``) this does nothing."""

from __future__ import annotations

import ctypes
from typing import Any


def _malloc_trim() -> Any:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library this process already runs on
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Blocking: call from a worker thread. True if memory was returned."""
    return bool(_TRIM(0)) if _TRIM is not None else False
