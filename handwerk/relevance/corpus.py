"""The judged corpus: ``demo_projects(count, seed)`` with the facts of each project.

A project is known by its description (unique among the demo projects, which
``tests/unit/test_demo.py`` checks): that is how a search hit is matched to its facts and how a
re-run finds the projects an earlier run (or ``handwerk demo-data`` with the same seed) has
already loaded. The corpus of ``count`` projects is a prefix of every larger one of the same
seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from handwerk.relevance.demo import demo_corpus
from handwerk.relevance.judge import Facts, Intent, facts_of, grade

DEFAULT_SIZE = 1000
DEFAULT_SEED = 7  # the seed of `handwerk demo-data`: its 300 projects are this corpus's first 300


@dataclass(frozen=True)
class Corpus:
    projects: tuple[dict[str, Any], ...]
    facts: tuple[Facts, ...]
    seed: int

    def __post_init__(self) -> None:
        if len(self.by_description) != len(self.projects):
            raise ValueError("two corpus projects share a description")

    @cached_property
    def by_description(self) -> dict[str, int]:
        return {p["description"]: i for i, p in enumerate(self.projects)}

    def __len__(self) -> int:
        return len(self.projects)

    def grades(self, intent: Intent) -> list[int]:
        """The grade of every project, in corpus order."""
        return [grade(intent, f) for f in self.facts]


def build_corpus(size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> Corpus:
    drawn = demo_corpus(size, seed)
    return Corpus(tuple(p for p, _ in drawn), tuple(facts_of(p, made) for p, made in drawn), seed)


def grades_of_hits(corpus: Corpus, index: dict[str, int], intent: Intent,
                   hits: Sequence[dict[str, Any]]) -> list[int]:
    """The grade of each search hit, in rank order; a hit that is not a corpus project
    (written by someone else meanwhile) grades 0."""
    found = (index.get(str(h.get("description", ""))) for h in hits)
    return [0 if i is None else grade(intent, corpus.facts[i]) for i in found]
