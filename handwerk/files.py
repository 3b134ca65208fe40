"""Durable file replacement: a reader sees the old file or the whole new one, never a part.

Write to a uniquely named file beside the target, fsync it, rename it over the target. The
fsync comes before the rename, else a crash after the rename can leave an empty file.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def replaced_atomically(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` for the caller (or a library) to write; once the
    block ends without error it is made durable and renamed over ``target``; otherwise removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        yield partial
        with partial.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def write_text_atomically(path: Path, text: str) -> None:
    with replaced_atomically(path) as partial:
        partial.write_text(text)


def write_json_atomically(path: Path, document: Any) -> None:
    write_text_atomically(path, json.dumps(document))
