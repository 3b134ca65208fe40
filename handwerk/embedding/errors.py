"""What the embedding layer raises that callers handle by kind rather than by message."""

from __future__ import annotations


class EmbedderUnavailable(RuntimeError):
    """Transient: the encoder failed for a reason that is not the input (out of memory, a
    broken runtime session). The consumer backs off and retries; it never dead-letters."""
