"""The search phrases of a run: distinct and deterministic for a seed."""

from __future__ import annotations

import random
from collections.abc import Iterator

from tooling.demo import KINDS, REGIONS, WOODS


class QueryGenerator:
    """Distinct, varied search phrases from the demo vocabulary (German and English, like the
    demo projects), deterministic for a seed. Never returns the same phrase twice."""

    _SHAPES = {
        "de": ["{name} aus {wood} mit {f1}", "{name} {wood} mit {f1} und {f2}",
               "{name} mit {f1} in {region}", "{wood} {name} für {context}",
               "{name} mit {f1}, {f2} und {f3}", "suche {name} aus {wood}, {region}"],
        "en": ["{name} in {wood} with {f1}", "{name} with {f1} and {f2}",
               "{wood} {name} in {region}", "{name} with {f1}, {f2} and {f3}"],
    }
    _CONTEXTS = {"de": ["Altbau", "Neubau", "Ferienhaus", "Mietwohnung", "Einfamilienhaus"],
                 "en": ["period property", "new build", "holiday flat", "family home"]}

    def __init__(self, seed: int = 17) -> None:
        self._rng = random.Random(seed)
        self._seen: set[str] = set()
        self._fallback = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        for _ in range(100):
            phrase = self._draw()
            if phrase not in self._seen:
                self._seen.add(phrase)
                return phrase
        while True:  # the vocabulary is exhausted for practical purposes: number them
            self._fallback += 1
            phrase = f"{self._draw()} ({self._fallback})"
            if phrase not in self._seen:
                self._seen.add(phrase)
                return phrase

    def take(self, count: int) -> list[str]:
        return [next(self) for _ in range(count)]

    def _draw(self) -> str:
        rng = self._rng
        kind = KINDS[rng.choice(list(KINDS))]
        language = "en" if rng.random() < 1 / 5 else "de"
        features = kind.features[language]
        f1, f2, f3 = rng.sample(features, 3)
        shape = rng.choice(self._SHAPES[language])
        return shape.format(name=rng.choice(kind.names[language]), wood=rng.choice(WOODS[language]),
                            f1=f1, f2=f2, f3=f3, region=rng.choice(REGIONS),
                            context=rng.choice(self._CONTEXTS[language]))
