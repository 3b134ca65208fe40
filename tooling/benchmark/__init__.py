"""`handwerk bench`: where the whole service stands, measured over HTTP against a `handwerk
serve` this package starts on a temporary data folder (with its own local broker).

Phases, in this order (each bounded by a flag of ``BenchConfig``):

1. every project text embedded once in this process (the exact search's matrix), kept in
   ``vector_store`` so a later run on the same texts and model skips it (embedding 100,000
   texts takes about 45 min on 2 cores); then the raw embedder rate, timed in this run on a
   sample of the texts the pipeline will embed, before the server starts (nothing competes);
2. ingest through the REST API (``concurrency`` writers) until every project is searchable:
   the first ``measured_ingest`` projects are embedded by the pipeline, half of them with no
   search, half under a light open-loop search load (``search_load_rate``, 10/s), each rate
   against the raw rate on every core; the rest reuse their vectors from the service's vector
   cache, preloaded from step 1 (a bulk load: same API, outbox, broker, consumer and index
   writes, no embedding). Then wait until compaction has put the points into the HNSW graph,
   as a serving index would be;
3. search quality: recall@10 of the service against the exact brute-force cosine search of the
   old design (numpy matrix product over all vectors), whose latency is the baseline;
4. find-similar with one client (with the ``Server-Timing`` stages, when the server sends them),
   batch-similar of 5, list projects (first page, deep offset);
5. find-similar throughput with ``throughput_clients`` concurrent clients;
6. write -> searchable at ``write_rate`` writes/s (POST ``?wait_indexed=``);
7. the serving process's RSS (every project written since its start);
8. a compaction (find-similar p50 during it against quiet) and, with ``reindex``, a reindex from
   the topic without vector reuse under the light search load (texts/s against the raw rate),
   each with the serving process's RSS after its handover;
9. optionally a restart (HNSW built before readiness) and search again: p50 and RSS against
   before (between compactions, everything written since the start).

Every query is distinct within a run (``QueryGenerator``). Numbers are percentiles from one run
on a possibly shared machine: the client runs on the same cores as the server.

Modules: ``config`` (``BenchConfig``, ``BenchError``), ``run`` (``run_benchmark``: the order
above), ``server`` (the `handwerk serve` child), ``vectors`` (step 1), the phases ``ingest``,
``generations``, ``quality``, ``search``, ``listing``, ``freshness`` and ``memory`` (over ``client``),
``machine``, and ``report`` (``render``). The pure parts (``stats``: percentiles, recall@k;
``timings``: Server-Timing and stage histograms; ``targets``: verdicts; ``queries``) are
unit-tested. The names below are this package's public face (``handwerk bench``, scripts/, tests).
"""


from tooling.benchmark.config import BenchConfig, BenchError, Log
from tooling.benchmark.machine import cpu_model, machine_info
from tooling.benchmark.memory import read_rss_kib
from tooling.benchmark.queries import QueryGenerator
from tooling.benchmark.report import render
from tooling.benchmark.run import run_benchmark
from tooling.benchmark.server import Server
from tooling.benchmark.stats import brute_force_top_k, latency_summary, percentile, recall_at_k
from tooling.benchmark.targets import (
    TARGETS,
    Info,
    Target,
    Verdict,
    evaluate,
    format_value,
    lookup,
    tally,
    verdict,
)
from tooling.benchmark.timings import (
    STAGES,
    Histograms,
    parse_histograms,
    parse_server_timing,
    quantile,
    stage_medians,
    stage_quantiles,
)
from tooling.benchmark.vectors import all_vectors, embed_texts, preload_vector_cache

__all__ = [
    "STAGES", "TARGETS", "BenchConfig", "BenchError", "Histograms", "Info", "Log", "QueryGenerator",
    "Server", "Target", "Verdict", "all_vectors", "brute_force_top_k", "cpu_model", "embed_texts",
    "evaluate", "format_value", "latency_summary", "lookup", "machine_info", "parse_histograms",
    "parse_server_timing", "percentile", "preload_vector_cache", "quantile", "read_rss_kib",
    "recall_at_k", "render", "run_benchmark", "stage_medians", "stage_quantiles", "tally",
    "verdict",
]
