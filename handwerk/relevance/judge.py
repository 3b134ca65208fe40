"""The judging rule: how relevant a corpus project is to a query, from structure alone.

A query carries an ``Intent`` (written by hand for ``estimator`` queries, built alongside the
text for generated ones): the project type it asks for and the *aspects* it names, each
optional: an item (name variant: "Wendeltreppe" is ``spiral``), a wood, features (one or
more), a region, a price band. Hard ``filters`` are what the request sends as ``filters``.

``grade(intent, facts)``:

- 0 when the project is of another type, or fails a hard filter (the API never returns it);
- otherwise 1 + the number of named aspects the project matches: item, wood, each named
  feature (one point each), region, price band (``lo <= final_price <= hi``).

So a query naming type, wood and one feature grades a project 1 (same type), 2 (same type and
the wood, or the feature), 3 (type, wood and feature); a query naming two features can reach 4.
Concepts are language-free: "Eiche" and "oak", "Glasbrüstung" and "a glass balustrade" are
the same wood and feature, whichever language the project is written in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from handwerk.relevance.demo import KINDS, REGIONS, DemoFacts
from handwerk.relevance.features import FEATURE_BY_ID, FEATURE_BY_PHRASE
from handwerk.relevance.vocabulary import ITEM_BY_ID, ITEM_BY_NAME, WOOD_BY_ID, WOOD_BY_WORD

FILTER_KEYS = frozenset({"project_type", "region", "min_price", "max_price"})
"""The filter fields find-similar accepts (api/schemas.py ``Filters``)."""


@dataclass(frozen=True)
class Intent:
    kind: str
    item: str | None = None
    wood: str | None = None
    features: tuple[str, ...] = ()
    region: str | None = None
    price: tuple[float, float] | None = None
    """A price band the text names ("unter 20.000 €"): a soft aspect, unlike a filter."""
    filters: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown project type {self.kind!r}")
        if self.item is not None and self.kind not in ITEM_BY_ID[self.item].kinds:
            raise ValueError(f"item {self.item!r} is not a kind of {self.kind}")
        if self.wood is not None and self.wood not in WOOD_BY_ID:
            raise ValueError(f"unknown wood {self.wood!r}")
        for feature in self.features:
            if self.kind not in FEATURE_BY_ID[feature].kinds:
                raise ValueError(f"feature {feature!r} is not one of {self.kind}")
        if len(set(self.features)) != len(self.features):
            raise ValueError("a feature is named twice")
        if self.region is not None and self.region not in REGIONS:
            raise ValueError(f"unknown region {self.region!r}")
        if set(self.filters) - FILTER_KEYS:
            raise ValueError(f"unknown filters {sorted(set(self.filters) - FILTER_KEYS)}")

    @property
    def aspects(self) -> int:
        """How many aspects the query names beyond the type (its top grade is 1 + this)."""
        return ((self.item is not None) + (self.wood is not None) + len(self.features)
                + (self.region is not None) + (self.price is not None))


@dataclass(frozen=True)
class Facts:
    """What a corpus project is, in concepts."""

    kind: str
    language: str
    item: str
    wood: str
    features: frozenset[str]
    region: str
    price: float


def facts_of(project: Mapping[str, Any], made_of: DemoFacts) -> Facts:
    kind = str(project["project_type"])
    features: frozenset[str] = frozenset()
    for phrase in made_of.features:
        features |= FEATURE_BY_PHRASE[(kind, phrase)]
    return Facts(kind, made_of.language, ITEM_BY_NAME[(kind, made_of.name)],
                 WOOD_BY_WORD[str(project["wood_type"])], features, str(project["region"]),
                 float(project["final_price"]))


def passes(filters: Mapping[str, Any], facts: Facts) -> bool:
    """Whether the API's filters let this project through (the same rule as the index)."""
    if "project_type" in filters and filters["project_type"] != facts.kind:
        return False
    if "region" in filters and filters["region"] != facts.region:
        return False
    if "min_price" in filters and facts.price < filters["min_price"]:
        return False
    return not ("max_price" in filters and facts.price > filters["max_price"])


def grade(intent: Intent, facts: Facts) -> int:
    if facts.kind != intent.kind or not passes(intent.filters, facts):
        return 0
    matched = (intent.item is not None and facts.item == intent.item) + (
        intent.wood is not None and facts.wood == intent.wood) + sum(
        f in facts.features for f in intent.features) + (
        intent.region is not None and facts.region == intent.region)
    if intent.price is not None:
        low, high = intent.price
        matched += low <= facts.price <= high
    return 1 + int(matched)
