"""The query set: ``Query`` (class, text, the ``Intent`` that judges it) and the generated German
classes. Everything is deterministic: the same list on every run and machine.

Classes (``CLASSES``, in report order):

- ``own_words``: the corpus's own German words ("Wangentreppe aus Eiche mit Glasbrüstung");
- ``paraphrase_de``: other German words for the same things: synonyms ("Stiege", "Wendeltreppe"
  for a Spindeltreppe), compounds joined ("Eichenholztreppe") and split ("Geländer aus Glas");
- ``english_to_german``: English queries over concepts the German projects are written with
  (``crosslingual``);
- ``german_to_english``: German queries naming only concepts that appear in English projects
  alone, so every relevant project (grade >= 2) is written in English (``crosslingual``);
- ``keywords``: two or three keywords ("Buche Dreifachverglasung");
- ``typos``: own-word and keyword queries with one or two typing errors;
- ``filtered``: queries sent with ``filters`` (project_type, region, min/max price), judged
  with the filter as a hard rule;
- ``estimator``: hand-written queries as an estimator types them, each with a written rule
  (``estimator``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from handwerk.relevance.demo import KINDS, REGIONS
from handwerk.relevance.features import FEATURES
from handwerk.relevance.judge import Intent
from handwerk.relevance.typos import with_typos
from handwerk.relevance.vocabulary import ITEMS, TYPES, WOODS, Concept, Wood

CLASSES = ("own_words", "paraphrase_de", "english_to_german", "german_to_english", "keywords",
           "typos", "filtered", "estimator")

# Quartiles of final_price per type in the default corpus (rounded): price filters and bands.
PRICE_QUARTILES: dict[str, tuple[int, int, int]] = {
    "kitchen": (25_000, 40_000, 55_000), "stairs": (16_000, 25_000, 40_000),
    "wardrobe": (6_000, 10_000, 15_000), "flooring": (6_000, 10_000, 16_000),
    "windows": (11_000, 18_000, 26_000), "furniture": (5_000, 7_500, 11_000)}


@dataclass(frozen=True)
class Query:
    cls: str
    text: str
    intent: Intent

    def body(self, mode: str | None = None, top_k: int = 10) -> dict[str, Any]:
        """The find-similar request: top_k 10, threshold 0 (every hit counts), the filters."""
        body: dict[str, Any] = {"query": self.text, "top_k": top_k, "threshold": 0}
        if self.intent.filters:
            body["filters"] = dict(self.intent.filters)
        if mode is not None:
            body["mode"] = mode
        return body


Maker = Callable[[random.Random], tuple[str, Intent] | None]


def unique(cls: str, seed: int, count: int, make: Maker) -> list[Query]:
    """``count`` queries of distinct text from ``make`` (which may decline a draw)."""
    rng, seen, out = random.Random(f"{cls}:{seed}"), set(), []
    for _ in range(count * 200):
        drawn = make(rng)
        if drawn is not None and drawn[0] not in seen:
            seen.add(drawn[0])
            out.append(Query(cls, drawn[0], drawn[1]))
            if len(out) == count:
                return out
    raise ValueError(f"{cls}: only {len(out)} distinct queries, {count} asked")


def of_kind(concepts: Sequence[Concept], kind: str, *, de: bool | None = True,
            en: bool | None = None) -> list[Concept]:
    """The concepts of a type; ``de``/``en``: True (has such corpus words), False (has none)."""
    return [c for c in concepts if kind in c.kinds
            and (de is None or bool(c.de) == de) and (en is None or bool(c.en) == en)]


def german_woods() -> list[Wood]:
    return [w for w in WOODS if w.de is not None]


def pick_features(rng: random.Random, kind: str, n: int, **which: bool | None) -> list[Concept]:
    pool = of_kind(FEATURES, kind, **which)
    return rng.sample(pool, n) if len(pool) >= n else []


def join_de(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " und " + parts[-1]


def own_words(rng: random.Random) -> tuple[str, Intent] | None:
    kind = rng.choice(list(KINDS))
    item = rng.choice(of_kind(ITEMS, kind))
    wood = rng.choice(german_woods())
    shape = rng.randrange(5)
    features = pick_features(rng, kind, 2 if shape in (2, 3) else 1)
    names = [f.de[0] for f in features]
    ids = tuple(f.id for f in features)
    if shape == 0:
        return f"{item.de[0]} aus {wood.de} mit {names[0]}", Intent(kind, item.id, wood.id, ids)
    if shape == 1:
        return f"{item.de[0]} aus {wood.de}", Intent(kind, item.id, wood.id)
    if shape == 2:
        return f"{item.de[0]} mit {join_de(names)}", Intent(kind, item.id, features=ids)
    if shape == 3:
        return f"{item.de[0]} aus {wood.de} mit {join_de(names)}", Intent(kind, item.id, wood.id, ids)
    region = rng.choice(REGIONS)
    return f"{item.de[0]} mit {names[0]} in {region}", Intent(kind, item.id, features=ids, region=region)


def paraphrase_de(rng: random.Random) -> tuple[str, Intent] | None:
    kind = rng.choice(list(KINDS))
    words = TYPES[kind]
    wood = rng.choice(german_woods())
    shape = rng.randrange(6)
    features = pick_features(rng, kind, 2 if shape == 4 else 1)
    alts = [rng.choice(f.de_alt) for f in features]
    ids = tuple(f.id for f in features)
    if shape in (0, 1):  # compounds joined: "Eichentreppe", "Eichenholztreppe"
        if not words.compound:
            return None
        head = rng.choice(words.compound)
        noun = (wood.prefix if shape == 0 else wood.holz) + head
        return f"{noun} mit {alts[0]}", Intent(kind, wood=wood.id, features=ids)
    if shape == 2:  # another noun for the type, the wood as a material
        noun = rng.choice(words.de_alt + words.de)
        return f"{noun} aus {wood.holz} mit {alts[0]}", Intent(kind, wood=wood.id, features=ids)
    item = rng.choice(of_kind(ITEMS, kind))
    if not item.de_alt:
        return None
    name = rng.choice(item.de_alt)
    if shape == 3:
        return f"{name} aus {wood.holz}", Intent(kind, item.id, wood.id)
    if shape == 4:
        return f"{name} mit {join_de(alts)}", Intent(kind, item.id, features=ids)
    _, mid, _ = PRICE_QUARTILES[kind]
    return (f"{name} aus {wood.holz} bis {mid:,} Euro".replace(",", "."),
            Intent(kind, item.id, wood.id, price=(0, mid)))


def _single_word(c: Concept) -> bool:
    return " " not in c.de[0]


def keywords(rng: random.Random) -> tuple[str, Intent] | None:
    kind = rng.choice(list(KINDS))
    wood = rng.choice(german_woods())
    items = [c for c in of_kind(ITEMS, kind) if _single_word(c)]
    features = [f for f in of_kind(FEATURES, kind) if len(f.kinds) == 1]
    shape = rng.randrange(5)
    f1, f2 = rng.sample(features, 2)
    k1, k2 = rng.choice(f1.key), rng.choice(f2.key)
    item = rng.choice(items)
    if shape == 0:
        return f"{wood.de} {k1}", Intent(kind, wood=wood.id, features=(f1.id,))
    if shape == 1:
        return f"{item.de[0]} {wood.de}", Intent(kind, item.id, wood.id)
    if shape == 2:
        return f"{item.de[0]} {k1}", Intent(kind, item.id, features=(f1.id,))
    if shape == 3:
        return f"{wood.de} {k1} {k2}", Intent(kind, wood=wood.id, features=(f1.id, f2.id))
    return f"{item.de[0]} {wood.de} {k1}", Intent(kind, item.id, wood.id, (f1.id,))


def typos(rng: random.Random) -> tuple[str, Intent] | None:
    drawn = (own_words if rng.random() < 0.6 else keywords)(rng)
    if drawn is None:
        return None
    text, intent = drawn
    return with_typos(text, rng), intent


def filtered(rng: random.Random) -> tuple[str, Intent] | None:
    drawn = (own_words if rng.random() < 0.5 else paraphrase_de)(rng)
    if drawn is None or drawn[1].price is not None or drawn[1].region is not None:
        return None
    text, intent = drawn
    kind = intent.kind
    low, mid, high = PRICE_QUARTILES[kind]
    choices: list[Mapping[str, Any]] = [
        {"project_type": kind}, {"region": rng.choice(REGIONS)},
        {"project_type": kind, "region": rng.choice(REGIONS)}, {"max_price": mid},
        {"min_price": mid}, {"project_type": kind, "min_price": low, "max_price": high}]
    filters = rng.choice(choices)
    return text, Intent(kind, intent.item, intent.wood, intent.features, filters=filters)


GENERATED: dict[str, tuple[Maker, int]] = {
    "own_words": (own_words, 80), "paraphrase_de": (paraphrase_de, 80),
    "keywords": (keywords, 60), "typos": (typos, 50), "filtered": (filtered, 50)}
"""The German generated classes and how many queries each has."""
