"""`handwerk eval`: a German relevance benchmark, measured over HTTP against a running service
(so it scores what users get).

The core (corpus, queries, judge, metrics) is installed as ``handwerk.relevance``, because the
model-switch gate scores models with it inside the service; this folder adds what measures a
running service (``run``, ``service``, ``report``) and re-exports the core's names.

The corpus is ``demo_projects(load, seed)`` (``corpus``), German with about one project in six
written in English. The queries (``queries``, ``crosslingual``, ``estimator``; ``queryset``
puts them together) fall into classes: ``own_words``, ``paraphrase_de``, ``english_to_german``,
``german_to_english``, ``keywords``, ``typos``, ``filtered`` and ``estimator``; each query
carries the rule that judges it.

Judging (``judge``): a project of another type, or one a query's filters exclude, grades 0;
otherwise 1 + the number of aspects the query names that the project matches (item i.e. name
variant, wood, each named feature, region, price band), over language-free concepts
(``vocabulary``, ``features``): "Eiche" is "oak", "Glasbrüstung" is "a glass balustrade".
Grade >= 2 counts as relevant.

Metrics (``metrics``): nDCG@10 with gain 2^grade - 1 against the ideal ranking of the whole
corpus; recall@10 = relevant hits in the top 10 / min(10, relevant projects); MRR of the first
relevant hit within the top 10. Per class and overall (every query weighs the same); a query
without a relevant project in the loaded corpus is left out and counted.

Run (``run``): create the corpus projects the service lacks (known by description, so a re-run
or an earlier ``handwerk demo-data`` with the same seed does not double them; a service holding
other projects is refused), wait until every project's indexed version is its version, then
find-similar with top_k 10, threshold 0 (and ``mode`` when given), and score. ``report.render``
prints the table.
"""

from handwerk.relevance.corpus import DEFAULT_SEED, DEFAULT_SIZE, Corpus, build_corpus
from handwerk.relevance.judge import Facts, Intent, facts_of, grade, passes
from handwerk.relevance.metrics import dcg, ndcg, recall, reciprocal_rank, score, summarize
from handwerk.relevance.queries import CLASSES, Query
from handwerk.relevance.queryset import all_queries, answerable, per_class
from tooling.relevance.report import render
from tooling.relevance.run import MODES, EvalConfig, run_eval
from tooling.relevance.service import EvalError

__all__ = [
    "CLASSES", "DEFAULT_SEED", "DEFAULT_SIZE", "MODES", "Corpus", "EvalConfig", "EvalError", "Facts",
    "Intent", "Query", "all_queries", "answerable", "build_corpus", "dcg", "facts_of", "grade",
    "ndcg", "passes", "per_class", "recall", "reciprocal_rank", "render", "run_eval", "score",
    "summarize",
]
