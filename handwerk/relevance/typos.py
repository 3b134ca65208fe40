"""Typing errors as people make them, deterministic for a random source: umlauts typed without
their dots (or as ae/oe/ue), two letters swapped, a letter dropped or doubled, a neighbouring
key on a German (QWERTZ) keyboard. Only words of five letters or more, never the first letter."""

from __future__ import annotations

import random
import re

_NEIGHBOURS = {
    "a": "sq", "b": "vn", "c": "xv", "d": "sf", "e": "wr", "f": "dg", "g": "fh", "h": "gj",
    "i": "uo", "j": "hk", "k": "jl", "l": "kö", "m": "n", "n": "bm", "o": "ip", "p": "oü",
    "r": "et", "s": "ad", "t": "rz", "u": "zi", "w": "qe", "z": "tu", "ü": "p", "ö": "lä",
    "ä": "ö"}
_FOLD = {"ä": ("a", "ae"), "ö": ("o", "oe"), "ü": ("u", "ue"), "ß": ("s", "ss")}


def typo(word: str, rng: random.Random) -> str:
    """One error in ``word`` (at least five letters)."""
    umlauts = [i for i, c in enumerate(word) if c in _FOLD]
    if umlauts and rng.random() < 0.4:
        i = rng.choice(umlauts)
        return word[:i] + rng.choice(_FOLD[word[i]]) + word[i + 1:]
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0 and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    if kind == 2:
        return word[:i] + word[i] + word[i:]
    near = _NEIGHBOURS.get(word[i].lower())
    if near:
        return word[:i] + rng.choice(near) + word[i + 1:]
    return word[:i] + word[i + 1:]


def with_typos(text: str, rng: random.Random) -> str:
    """``text`` with one error, or two when it has four words or more; never unchanged."""
    words = re.split(r"(\s+)", text)
    candidates = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not candidates:
        candidates = [i for i, w in enumerate(words) if len(w) >= 5]
    if not candidates:
        return text + text[-1]
    count = 2 if len(text.split()) >= 4 and len(candidates) >= 2 else 1
    for i in rng.sample(candidates, count):
        words[i] = typo(words[i], rng)
    changed = "".join(words)
    return changed if changed != text else text[:-1]
