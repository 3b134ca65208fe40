"""German compound splitting for keyword search: "Eichenholztreppe" also counts as
"eichenholz", "eiche", "holz" and "treppe", so "Holztreppe aus Eiche" and "Eichentreppe" share
words (measured on the relevance benchmark: ``tooling/relevance/compounds.py``).

Koehn & Knight (2003), "Empirical methods for compound splitting", over wordfreq's German word
frequencies: a word splits in two where the geometric mean of its parts' frequencies beats the
whole word's. The left part may carry a linking element (-s-, -es-, -n-, -en-, -e-) or have
lost an -e ("Kirschbaum": "kirsche"); a part that is itself a compound of known parts counts
with its own split's mean ("holztreppe" is as good as "holz" and "treppe"); each part is split
again. Parts have at least ``min_part`` letters and a frequency of at least Zipf ``min_zipf``
(Zipf 3: once per million words), which keeps "Kommode" and "Podest" whole.

wordfreq (Apache-2.0 code; its frequency data CC-BY-SA 4.0) is frozen at 3.1.1: its author
stopped updating it in 2024, and a generation's splits must not change under it (the version
is part of the analyzer spec a generation records).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import cache, lru_cache
from types import MappingProxyType

LINKS = ("es", "en", "s", "n", "e")  # German linking elements, longest first
_WORD = re.compile(r"[^\W\d_]+")


@cache
def german_frequencies(min_zipf: float) -> Mapping[str, float]:
    """wordfreq's German words at least Zipf ``min_zipf``, word -> frequency.

    Rarer words can never be a part, and a whole word rarer than that never beats a split
    whose parts both reach it, so leaving them out changes no split (and keeps the table at
    about 40,000 words instead of 630,000). Loaded once per process (read-only data, like a
    model's weights): every generation's analyzer shares it.
    """
    import wordfreq  # 0.7 s and its data on first use, not on import of the index package

    # read_cBpack, not get_frequency_list: that one caches all 630,000 words for good (40 MB)
    buckets = wordfreq.read_cBpack(wordfreq.available_languages("best")["de"])
    floor = round(-100 * (min_zipf - 9))  # a bucket holds the words of -index centibels
    table: dict[str, float] = {}
    for index, bucket in enumerate(buckets[:floor + 1]):
        frequency = 10 ** (-index / 100)
        for word in bucket:
            table[word] = frequency
    return MappingProxyType(table)


def wordfreq_version() -> str:
    from importlib.metadata import version

    return version("wordfreq")


class CompoundSplitter:
    """Splits words into the parts of their best split (and those parts' parts)."""

    def __init__(self, frequencies: Mapping[str, float], *, min_part: int = 4,
                 min_zipf: float = 3.0) -> None:
        self._freq = frequencies
        self._min_part = min_part
        self._min_freq = 10 ** (min_zipf - 9)
        self.split = lru_cache(maxsize=65_536)(self._split)
        self._best = lru_cache(maxsize=262_144)(self._best_split)

    def parts(self, text: str) -> list[str]:
        """The parts of every compound in the text, in order (lowercase)."""
        return [part for word in _WORD.findall(text.lower()) if len(word) >= 2 * self._min_part
                for part in self.split(word)]

    def _weight(self, word: str) -> float:
        """How well a word stands as a part: its frequency, or, for a compound of known parts,
        its best split's mean (a part need not be in the word list itself)."""
        return max(self._freq.get(word, 0.0), self._best(word)[0])

    def _modifier(self, left: str) -> tuple[float, str]:
        """The best reading of a left part: as is, without a linking element, or with an
        elided -e restored."""
        readings = [left, left + "e"] + [left[:-len(link)] for link in LINKS
                                         if left.endswith(link)
                                         and len(left) - len(link) >= self._min_part]
        return max((self._weight(reading), reading) for reading in readings)

    def _best_split(self, word: str) -> tuple[float, str, str]:
        """The binary split with the highest geometric mean of its parts' weights; (0, "", "")
        if no split has two parts that reach ``min_zipf``."""
        best = (0.0, "", "")
        for i in range(self._min_part, len(word) - self._min_part + 1):
            left_weight, left = self._modifier(word[:i])
            right = word[i:]
            right_weight = self._weight(right)
            if left_weight >= self._min_freq and right_weight >= self._min_freq:
                best = max(best, (math.sqrt(left_weight * right_weight), left, right))
        return best

    def _split(self, word: str) -> tuple[str, ...]:
        mean, left, right = self._best(word)
        if mean <= self._freq.get(word, 0.0):
            return ()  # stays whole: no split, or the word is more common than its parts
        return (left, *self.split(left), right, *self.split(right))
