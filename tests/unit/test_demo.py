"""`handwerk demo-data` is the first thing a new user searches: its descriptions must read
like real project descriptions, without phrases repeated inside one description."""

from __future__ import annotations

import re

import pytest

from tooling.demo import KINDS, demo_projects

PROJECTS = demo_projects(3000, seed=7)


def trigrams(text: str) -> list[tuple[str, ...]]:
    words = re.findall(r"[\w-]+", text.lower())
    return [tuple(words[i:i + 3]) for i in range(len(words) - 2)]


def test_no_description_repeats_a_phrase() -> None:
    for project in PROJECTS:
        grams = trigrams(project["description"])
        repeated = {g for g in grams if grams.count(g) > 1}
        assert not repeated, (project["description"], repeated)


@pytest.mark.parametrize("language", ["de", "en"])
def test_no_description_repeats_a_feature(language: str) -> None:
    phrases = {f for kind in KINDS.values() for f in kind.features[language]}
    for project in PROJECTS:
        for phrase in phrases:
            assert project["description"].count(phrase) <= 1, (project["description"], phrase)


def test_descriptions_vary_and_fit_their_project() -> None:
    descriptions = [p["description"] for p in PROJECTS]
    assert len(set(descriptions)) == len(descriptions)
    for project in PROJECTS:
        text = project["description"]
        assert project["wood_type"] in text and project["region"] in text
        features = [f for f in KINDS[project["project_type"]].features["de" if " aus " in text
                                                                       else "en"] if f in text]
        assert 2 <= len(features) <= 3, text
    assert demo_projects(5, seed=1) == demo_projects(5, seed=1)  # deterministic
