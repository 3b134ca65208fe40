"""The model-switch gate: do two generations find the same projects for the same questions?

agreement@k is the mean share of the live generation's top k that the candidate's top k
also holds, over a fixed set of estimator-style queries (German and English, the kinds of
work in the index). Each side embeds the queries with its own model, as search would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from handwerk.index.protocol import SearchFilters

if TYPE_CHECKING:
    from handwerk.index.active import IndexTarget

QUERIES = (
    "Einbauküche aus Eiche mit Kochinsel",
    "kitchen with oak fronts and an island",
    "Treppe aus Buche mit Podest und Geländer",
    "spiral staircase in steel and walnut",
    "Kleiderschrank mit Schiebetüren nach Maß",
    "built-in wardrobe under a sloped roof",
    "Badmöbel aus Teak, wasserfest lackiert",
    "Massivholz Esstisch für acht Personen",
    "bookshelf wall with a ladder, birch plywood",
    "Dielenboden aus Lärche im Altbau verlegen",
    "Haustür aus Eiche mit Glaseinsatz",
    "office furniture, desks and cabinets for a small agency",
    "Terrassendeck aus Douglasie",
    "Fenster aus Kiefer, Denkmalschutz",
    "Sauna aus Zirbe für den Keller",
    "garden shed, larch cladding",
    "Wandverkleidung mit Akustikpaneelen",
    "children's bunk bed from maple",
    "Kücheninsel mit Granitplatte und Eichenfronten in München",
    "restoration of an old farmhouse staircase",
)


async def top_ids(target: IndexTarget, k: int) -> list[list[str]]:
    vectors = await target.embedder.embed_queries(list(QUERIES))
    hits = await target.index.search_batch([v.tolist() for v in vectors], top_k=k,
                                           threshold=-1.0, filters=SearchFilters())
    return [[h.project_id for h in row] for row in hits]


async def agreement_at_k(live: IndexTarget, candidate: IndexTarget, *, k: int = 10) -> float:
    """1.0: identical top k for every query; 0.0: nothing in common. An empty live index
    agrees with anything."""
    expected, got = await top_ids(live, k), await top_ids(candidate, k)
    shares = [len(set(e) & set(g)) / len(e) for e, g in zip(expected, got, strict=True) if e]
    return sum(shares) / len(shares) if shares else 1.0
