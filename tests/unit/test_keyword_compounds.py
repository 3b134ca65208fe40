"""German compound splitting in the keyword analyzer: what splits, and that a generation keeps
the analysis its spec records (one built before splitting existed is analyzed as before)."""

from __future__ import annotations

import pytest

from handwerk.index.compounds import CompoundSplitter, german_frequencies, wordfreq_version
from handwerk.index.keywords import KeywordAnalyzer, default_keyword_spec, terms

OLD_SPEC = {"analyzer": "bm25", "language": "german", "k": 1.2, "b": 0.75, "avg_len": 24.0}


@pytest.fixture(scope="module")
def splitter() -> CompoundSplitter:
    return CompoundSplitter(german_frequencies(3.0))


@pytest.mark.parametrize(("word", "parts"), [
    ("Eichenholztreppe", ["eichenholz", "eiche", "holz", "treppe"]),  # -n- and nested parts
    ("Holztreppe", ["holz", "treppe"]),
    ("Kiefernfenster", ["kiefer", "fenster"]),  # linking -n-
    ("Glasgeländer", ["glas", "geländer"]),
    ("Kommode", []),  # more frequent whole than as "komm" + "ode"
    ("Podest", []),  # parts under 4 letters never count
    ("Treppe", []),
])
def test_splits_compounds_into_known_parts(splitter: CompoundSplitter, word: str,
                                           parts: list[str]) -> None:
    assert splitter.parts(word) == parts


def test_splitting_is_deterministic_and_cached(splitter: CompoundSplitter) -> None:
    assert splitter.parts("Eichenholztreppe aus Eichenholz") == \
        ["eichenholz", "eiche", "holz", "treppe", "eiche", "holz"]
    assert splitter.parts("Eichenholztreppe") == splitter.parts("EICHENHOLZTREPPE")


def test_new_generations_record_compound_splitting() -> None:
    spec = default_keyword_spec()
    assert spec["compounds"]["splitter"] == "koehn-knight"
    assert spec["compounds"]["frequencies"].startswith("wordfreq 3.1.1")
    assert {k: spec[k] for k in OLD_SPEC} == OLD_SPEC  # BM25 itself unchanged


def _shared(document: KeywordAnalyzer, query: str, text: str) -> set[int]:
    payload = {"name": "", "description": text, "project_type": "", "wood_type": "", "region": ""}
    vector = document.document(payload)
    assert vector is not None
    return set(terms(vector)[0]) & set(terms(document.query(query))[0])


def test_a_split_query_finds_the_same_things_in_other_words() -> None:
    analyzer = KeywordAnalyzer(default_keyword_spec())
    # "Eichentreppe" shares eiche and treppe with "Holztreppe aus Eiche"
    assert len(_shared(analyzer, "Eichentreppe", "Holztreppe aus Eiche")) >= 2
    assert len(_shared(analyzer, "Eichenholztreppe", "Treppe aus Eichenholz")) >= 3


def test_a_generation_without_compounds_in_its_spec_is_analyzed_as_before() -> None:
    old = KeywordAnalyzer(OLD_SPEC)
    assert _shared(old, "Eichentreppe", "Holztreppe aus Eiche") == set()
    payload = {"name": "Holztreppe", "description": "Holztreppe aus Eiche", "project_type": "stairs",
               "wood_type": "Eiche", "region": "Bayern"}
    new_vector, old_vector = KeywordAnalyzer(default_keyword_spec()).document(payload), \
        old.document(payload)
    assert new_vector is not None and old_vector is not None
    assert set(terms(old_vector)[0]) < set(terms(new_vector)[0])


def test_parts_weigh_less_than_the_words_written() -> None:
    """The parts are a second sparse vector at the spec's weight, added to the text's: an
    exact word still outranks a word that only shares its parts."""
    analyzer = KeywordAnalyzer(default_keyword_spec())
    plain = KeywordAnalyzer(OLD_SPEC)
    query = dict(zip(*terms(analyzer.query("Eichentreppe")), strict=True))
    whole = dict(zip(*terms(plain.query("Eichentreppe")), strict=True))
    assert all(query[t] == 1.0 for t in whole)
    assert sorted(v for t, v in query.items() if t not in whole) == [0.5, 0.5]


def test_a_splitter_this_install_cannot_reproduce_is_refused() -> None:
    spec = default_keyword_spec()
    spec["compounds"] = {**spec["compounds"], "frequencies": "wordfreq 9.9 de"}
    with pytest.raises(ValueError, match="reindex"):
        KeywordAnalyzer(spec)


def test_the_recorded_wordfreq_is_the_installed_one() -> None:
    """A wordfreq upgrade changes splits: it must come with a new recorded version."""
    assert default_keyword_spec()["compounds"]["frequencies"] == f"wordfreq {wordfreq_version()} de"
