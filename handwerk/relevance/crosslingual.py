"""The cross-language classes.

``english_to_german``: English queries naming concepts the German projects are written with
(every named item, wood and feature has German corpus words), in English words that are mostly
not the corpus's English ones ("beech staircase with glass railings").

``german_to_english``: German queries naming only concepts that the corpus writes in English
alone (items such as "Shaker kitchen" or "Floating staircase", the wood "birch plywood", the
features "oiled treads", "a painted stringer", "draught-proofing"), so every project of grade
>= 2 is an English one: the class measures whether a German query finds them.
"""

from __future__ import annotations

import random

from handwerk.relevance.demo import KINDS
from handwerk.relevance.features import FEATURES
from handwerk.relevance.judge import Intent
from handwerk.relevance.queries import Maker, german_woods, of_kind, pick_features
from handwerk.relevance.vocabulary import ITEMS, TYPES, WOOD_BY_ID

BIRCH_DE = ("Birkensperrholz", "Birke-Multiplex", "Sperrholz aus Birke")


def _en(words: tuple[str, ...], fallback: tuple[str, ...], rng: random.Random) -> str:
    return rng.choice(words or fallback)


def english_to_german(rng: random.Random) -> tuple[str, Intent] | None:
    kind = rng.choice(list(KINDS))
    wood = rng.choice(german_woods())
    shape = rng.randrange(5)
    features = pick_features(rng, kind, 2 if shape == 2 else 1)
    phrases = [_en(f.en_alt, f.en, rng) for f in features]
    ids = tuple(f.id for f in features)
    type_word = rng.choice(TYPES[kind].en)
    item = rng.choice(of_kind(ITEMS, kind))
    item_word = _en(item.en_alt, item.en, rng)
    if shape == 0:
        return f"{wood.en_alt} {type_word} with {phrases[0]}", Intent(kind, wood=wood.id, features=ids)
    if shape == 1:
        return f"{item_word} in {wood.en_alt}", Intent(kind, item.id, wood.id)
    if shape == 2:
        return (f"{item_word} with {phrases[0]} and {phrases[1]}",
                Intent(kind, item.id, features=ids))
    if shape == 3:
        return (f"{item_word} in solid {wood.en_alt} with {phrases[0]}",
                Intent(kind, item.id, wood.id, ids))
    return f"{type_word} in {wood.en_alt}, {phrases[0]}", Intent(kind, wood=wood.id, features=ids)


def german_to_english(rng: random.Random) -> tuple[str, Intent] | None:
    kind = rng.choice(list(KINDS))
    items = of_kind(ITEMS, kind, de=False, en=True)
    features = of_kind(FEATURES, kind, de=False, en=True)
    type_word = rng.choice(TYPES[kind].de + TYPES[kind].de_alt)
    birch = WOOD_BY_ID["birch_ply"]
    shape = rng.randrange(5)
    if shape == 0:  # the wood alone
        return f"{type_word} aus {rng.choice(BIRCH_DE)}", Intent(kind, wood=birch.id)
    if shape == 1 and items:  # an item alone
        item = rng.choice(items)
        return rng.choice(item.de_alt), Intent(kind, item.id)
    if shape == 2 and items:
        item = rng.choice(items)
        return (f"{rng.choice(item.de_alt)} aus {rng.choice(BIRCH_DE)}",
                Intent(kind, item.id, birch.id))
    if shape == 3 and features:
        feature = rng.choice(features)
        return (f"{type_word} mit {rng.choice(feature.de_alt)}", Intent(kind, features=(feature.id,)))
    if shape == 4 and items and features:
        item, feature = rng.choice(items), rng.choice(features)
        return (f"{rng.choice(item.de_alt)} mit {rng.choice(feature.de_alt)}",
                Intent(kind, item.id, features=(feature.id,)))
    return None


CROSSLINGUAL: dict[str, tuple[Maker, int]] = {
    "english_to_german": (english_to_german, 60), "german_to_english": (german_to_english, 50)}

