"""key=value logs on stderr; the entry point configures this once."""

from __future__ import annotations

import logging


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level, format="ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)r")
    for noisy in ("aiokafka", "httpx", "sentence_transformers", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
