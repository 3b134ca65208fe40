"""Hand freed heap back to the operating system.

glibc keeps memory that Python, ONNX Runtime and the Qdrant engine freed in its arenas, so a
closed generation or an export's pages still count in the serving process's RSS until
``malloc_trim`` returns them. Elsewhere (musl, macOS) this does nothing."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)


def _malloc_trim() -> ctypes._NamedFuncPointer | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Blocking (it walks every arena: milliseconds): call from a worker thread."""
    if _TRIM is None:
        return False
    return bool(_TRIM(0))
