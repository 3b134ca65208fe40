"""The pure parts of `handwerk eval` (tooling/relevance/): the metrics on hand-computed cases,
the judging rule, the vocabulary against the demo generator, and the query set's coverage of
the default corpus. No server, no model."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from handwerk.api.schemas import FindSimilarIn
from handwerk.relevance.features import FEATURE_BY_PHRASE
from handwerk.relevance.metrics import relevant_count
from handwerk.relevance.typos import with_typos
from handwerk.relevance.vocabulary import ITEM_BY_NAME, WOOD_BY_WORD
from tooling.demo import KINDS, WOODS, demo_corpus, demo_projects
from tooling.relevance import (
    CLASSES,
    DEFAULT_SEED,
    DEFAULT_SIZE,
    Facts,
    Intent,
    all_queries,
    answerable,
    build_corpus,
    dcg,
    grade,
    ndcg,
    per_class,
    recall,
    reciprocal_rank,
    render,
    score,
    summarize,
)

QUERIES = all_queries()
CORPUS = build_corpus(DEFAULT_SIZE, DEFAULT_SEED)
L3 = math.log2(3)


# ---------------------------------------------------------------- metrics, computed by hand


def test_dcg_uses_exponential_gain_and_log_discount() -> None:
    assert dcg([3, 2, 0]) == pytest.approx(7 + 3 / L3)
    assert dcg([1, 1, 1, 1]) == pytest.approx(1 + 1 / L3 + 1 / 2 + 1 / math.log2(5))
    assert dcg([]) == 0
    assert dcg([3] * 12) == pytest.approx(dcg([3] * 10))  # only the first 10 count


def test_ndcg_against_the_ideal_ranking_of_the_whole_corpus() -> None:
    assert ndcg([3, 2, 1], [1, 3, 0, 2]) == pytest.approx(1.0)
    assert ndcg([0, 3], [3, 0, 0]) == pytest.approx((7 / L3) / 7)  # 0.6309
    assert ndcg([1, 2], [2, 1, 0]) == pytest.approx((1 + 3 / L3) / (3 + 1 / L3))  # 0.7967
    assert ndcg([0] * 10, [1, 0]) == 0.0
    assert ndcg([], [0, 0, 0]) is None  # nothing to find: undefined
    # the ideal is cut at 10 too: 12 perfect projects, the 10 best found
    assert ndcg([2] * 10, [2] * 12) == pytest.approx(1.0)


def test_recall_is_capped_by_ten_or_the_relevant_count() -> None:
    assert recall([2, 0, 3, 1], relevant=2) == 1.0  # both relevant ones found
    assert recall([2, 0, 1, 1], relevant=4) == 0.25
    assert recall([2, 2, 2, 2, 2, 0, 0, 0, 0, 0], relevant=20) == 0.5  # min(10, 20) = 10
    assert recall([1] * 10, relevant=3) == 0.0  # grade 1 (type only) is not relevant
    assert recall([2] * 12, relevant=30) == 1.0  # only the first 10 hits count
    assert recall([2], relevant=0) is None


def test_reciprocal_rank_of_the_first_relevant_hit() -> None:
    assert reciprocal_rank([3]) == 1.0
    assert reciprocal_rank([1, 1, 2, 3]) == pytest.approx(1 / 3)
    assert reciprocal_rank([0, 1] * 5) == 0.0
    assert reciprocal_rank([0] * 10 + [3]) == 0.0  # beyond the top 10


def test_score_and_summarize() -> None:
    judged = [3, 2, 1, 0, 0]
    assert relevant_count(judged) == 2
    first = score([3, 0, 2], judged)
    assert first is not None
    assert first.recall == 1.0 and first.mrr == 1.0
    assert first.ndcg == pytest.approx((7 + 3 / 2) / (7 + 3 / L3 + 1 / 2))
    second = score([1, 0, 0], judged)
    assert second is not None and second.recall == 0.0 and second.mrr == 0.0
    assert score([1], [1, 1, 0]) is None  # no project of grade >= 2: not scored
    table = summarize([("a", first), ("b", second), ("b", first)])
    assert table["a"]["queries"] == 1 and table["b"]["queries"] == 2
    assert table["b"]["mrr"] == 0.5 and table["overall"]["queries"] == 3
    assert table["overall"]["recall@10"] == pytest.approx(round(2 / 3, 4))


# ---------------------------------------------------------------- the judging rule


def facts(**changes: object) -> Facts:
    base: dict[str, object] = dict(kind="stairs", language="de", item="spiral", wood="oak",
                                   features=frozenset({"glass_rail", "landing"}), region="Bayern",
                                   price=20_000.0)
    return Facts(**{**base, **changes})  # type: ignore[arg-type]


def test_grade_is_one_plus_the_named_aspects_matched() -> None:
    query = Intent("stairs", wood="oak", features=("glass_rail",))
    assert grade(query, facts()) == 3
    assert grade(query, facts(wood="beech")) == 2
    assert grade(query, facts(features=frozenset())) == 2
    assert grade(query, facts(wood="beech", features=frozenset())) == 1  # same type only
    assert grade(query, facts(kind="kitchen", item="country", features=frozenset())) == 0
    two = Intent("stairs", "spiral", "oak", ("glass_rail", "landing"), region="Bayern")
    assert two.aspects == 5 and grade(two, facts()) == 6
    assert grade(two, facts(item="stringer", region="Hamburg")) == 4
    banded = Intent("stairs", price=(0, 15_000))
    assert grade(banded, facts()) == 1 and grade(banded, facts(price=15_000.0)) == 2


def test_filters_are_hard() -> None:
    query = Intent("stairs", wood="oak", filters={"region": "Hamburg"})
    assert grade(query, facts()) == 0
    assert grade(query, facts(region="Hamburg")) == 2
    priced = Intent("stairs", wood="oak", filters={"min_price": 10_000, "max_price": 20_000})
    assert grade(priced, facts()) == 2 and grade(priced, facts(price=20_001.0)) == 0
    assert grade(Intent("stairs", filters={"project_type": "kitchen"}), facts()) == 0


def test_intents_refuse_what_the_corpus_cannot_have() -> None:
    with pytest.raises(ValueError):
        Intent("stairs", features=("island",))  # a kitchen feature
    with pytest.raises(ValueError):
        Intent("kitchen", item="spiral")
    with pytest.raises(ValueError):
        Intent("kitchen", wood="teak")
    with pytest.raises(ValueError):
        Intent("kitchen", filters={"colour": "red"})
    with pytest.raises(ValueError):
        Intent("boats")


def test_concepts_are_language_free() -> None:
    """An English project grades like a German one with the same wood and feature."""
    query = Intent("stairs", wood="oak", features=("glass_rail",))
    english = [f for f in CORPUS.facts if f.language == "en" and f.kind == "stairs"
               and f.wood == "oak" and "glass_rail" in f.features]
    german = [f for f in CORPUS.facts if f.language == "de" and f.kind == "stairs"
              and f.wood == "oak" and "glass_rail" in f.features]
    assert english and german
    assert {grade(query, f) for f in english + german} == {3}


def test_every_word_the_generator_writes_has_one_concept() -> None:
    for kind_name, kind in KINDS.items():
        for language in ("de", "en"):
            for name in kind.names[language]:
                assert (kind_name, name) in ITEM_BY_NAME, name
            for phrase in kind.features[language]:
                assert FEATURE_BY_PHRASE.get((kind_name, phrase)), phrase
    for language in ("de", "en"):
        for wood in WOODS[language]:
            assert wood in WOOD_BY_WORD, wood


def test_demo_corpus_is_demo_projects_with_facts() -> None:
    drawn = demo_corpus(400, seed=3)
    assert [p for p, _ in drawn] == demo_projects(400, seed=3)
    for project, made in drawn:
        assert made.name in project["name"] and project["wood_type"] in project["name"]
        assert all(f in project["description"] for f in made.features)
        assert made.language == ("en" if project["wood_type"] in WOODS["en"] else "de")
    assert build_corpus(300).projects == CORPUS.projects[:300]  # a prefix of every larger one


# ---------------------------------------------------------------- the query set


def test_query_set_covers_every_class() -> None:
    counts = Counter(q.cls for q in QUERIES)
    assert len(QUERIES) >= 400
    assert set(counts) == set(CLASSES)
    assert all(n >= 50 for n in counts.values()), counts
    for cls in CLASSES:
        texts = [q.text for q in QUERIES if q.cls == cls]
        assert len(set(texts)) == len(texts), cls
    assert [q.text for q in all_queries()] == [q.text for q in QUERIES]  # deterministic
    assert all(q.intent.aspects >= 1 for q in QUERIES)


def test_every_query_has_a_relevant_project_in_the_default_corpus() -> None:
    kept, dropped = answerable(QUERIES, CORPUS)
    assert not dropped, [q.text for q in dropped]


def test_cross_language_classes_target_the_other_language() -> None:
    for query in QUERIES:
        relevant = [f for f, g in zip(CORPUS.facts, CORPUS.grades(query.intent), strict=True) if g >= 2]
        if query.cls == "german_to_english":
            assert {f.language for f in relevant} == {"en"}, query.text
        if query.cls == "english_to_german":
            assert "de" in {f.language for f in relevant}, query.text


def test_every_request_is_one_the_api_accepts() -> None:
    for query in QUERIES:
        body = query.body()
        FindSimilarIn.model_validate(body)
        assert body["top_k"] == 10 and body["threshold"] == 0 and "mode" not in body
        assert ("filters" in body) == (query.cls == "filtered"), query.text
    assert QUERIES[0].body("hybrid")["mode"] == "hybrid"


def test_estimator_queries_are_hand_written_with_a_rule() -> None:
    estimator = [q for q in QUERIES if q.cls == "estimator"]
    assert len(estimator) >= 50
    assert {q.intent.kind for q in estimator} == set(KINDS)
    assert sum(q.intent.wood is not None for q in estimator) >= 30


def test_per_class_takes_the_first_of_each() -> None:
    subset = per_class(QUERIES, 3)
    assert Counter(q.cls for q in subset) == dict.fromkeys(CLASSES, 3)
    assert per_class(QUERIES, None) == QUERIES


def test_typos_change_the_text_deterministically() -> None:
    for seed in range(200):
        text = "Wangentreppe aus Eiche mit Glasbrüstung"
        changed = with_typos(text, random.Random(seed))
        assert changed != text and changed == with_typos(text, random.Random(seed))
        assert abs(len(changed) - len(text)) <= 2


def test_render_lists_every_class_then_overall() -> None:
    from rich.console import Console

    row = {"queries": 2, "ndcg@10": 0.5, "recall@10": 0.25, "mrr": 1.0}
    document = {"service": {"model": "m", "mode": None}, "corpus": {"projects": 10, "seed": 7},
                "queries": {"scored": 4, "left_out": ["x"]},
                "metrics": {"keywords": row, "own_words": row, "overall": row}}
    console = Console(record=True, width=120)
    console.print(render(document))
    text = console.export_text()
    assert text.index("own_words") < text.index("keywords") < text.index("overall")
    assert "0.500" in text and "1 queries left out" in text
