"""Should queries run the int8 (dynamically quantized) ONNX model? (issue 9)

Documents stay fp32 (the index never changes); only the query vectors differ. This embeds N
demo projects as documents (fp32), a fixed set of estimator-style queries (German and
English) with fp32 and with int8, searches exactly (dot product, the vectors are unit length)
and reports recall@10 of the int8 queries against the fp32 truth, the cosine between the two
query vectors, and query latency (1 thread, sequential, after warm-up; single queries and
batches of 8, fp32 and int8 interleaved). Prints one JSON document (and writes it with --out).
The gate: recall@10 >= 0.95 and int8 faster, else ``query_quantization`` stays "none".

    .venv/bin/python scripts/eval_int8.py --projects 5000 --out bench-results/int8-queries.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from handwerk.contract.text import project_text  # noqa: E402
from handwerk.embedding.embedder import Embedder  # noqa: E402
from tooling.demo import KINDS, REGIONS, WOODS, demo_projects  # noqa: E402

K = 10
MIN_RECALL = 0.95
# Written by hand: short, vague, misspelt or off-catalogue requests an estimator types too.
CRAFTED = [
    "Küche", "Treppe", "Einbauschrank", "Parkett", "Fenster", "Esstisch", "Gartenhaus",
    "Badmöbel Teak", "Sauna Zirbe Keller", "Dielenboden Lärche Altbau",
    "Einbauküche aus Eiche mit Kochinsel", "Treppe aus Buche mit Podest",
    "Kleiderschrank mit Schiebetüren", "Wendeltreppe mit Glasgeländer über zwei Geschosse",
    "Landhausküche aus Eiche mit Kochinsel und Granitplatte", "Esstisch Nussbaum massiv 2,40 m",
    "Wendeltreppe Buche geölt, freitragend, für ein Einfamilienhaus in Bayern",
    "Einbauschrank Dachschräge", "Kuche Eiche Insel", "Fenster sanieren Altbau Denkmalschutz",
    "oak kitchen with island", "spiral staircase walnut", "kitchen", "staircase",
    "built-in wardrobe with mirrored doors", "herringbone floor oak", "sash windows repair",
    "walnut desk with drawers", "bespoke bookcase for an alcove", "garden office",
]


def generated_queries(count: int, seed: int) -> list[tuple[str, str]]:
    """(language, query) pairs built from the demo vocabulary, deterministic and distinct."""
    rng = random.Random(seed)
    templates = {
        "de": ["{name} aus {wood}", "{name} {wood} mit {f1}", "{name} mit {f1} und {f2}",
               "{name} aus {wood} mit {f1}, {region}", "{name} ca. {area} m² in {region}",
               "{f1} {wood}", "{name} {region}", "Angebot {name} {wood}, {area} m²"],
        "en": ["{name} in {wood}", "{wood} {name} with {f1}", "{name} with {f1} and {f2}",
               "{name} in {region}, about {area} m²", "{name} {wood} {region}"],
    }
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    while len(out) < count:
        language = "en" if rng.random() < 1 / 3 else "de"
        kind = KINDS[rng.choice(list(KINDS))]
        f1, f2 = rng.sample(kind.features[language], 2)
        text = rng.choice(templates[language]).format(
            name=rng.choice(kind.names[language]), wood=rng.choice(WOODS[language]),
            f1=f1, f2=f2, region=rng.choice(REGIONS), area=rng.randint(2, 80))
        if text not in seen:
            seen.add(text)
            out.append((language, text))
    return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def stats_ms(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {"p50": round(statistics.median(ms), 3), "p90": round(ms[int(0.9 * (len(ms) - 1))], 3),
            "mean": round(statistics.fmean(ms), 3), "n": len(ms)}


def timed(embedder: Embedder, texts: list[str]) -> float:
    start = time.perf_counter()
    embedder.encode(texts, "query")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=5000, help="corpus size (demo projects)")
    parser.add_argument("--queries", type=int, default=150,
                        help="generated queries, at least 100 (plus the crafted ones)")
    parser.add_argument("--seed", type=int, default=7, help="demo corpus seed")
    parser.add_argument("--reps", type=int, default=3, help="latency repetitions over the queries")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "handwerk",
                        help="ONNX export cache (the int8 copy is made here)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    if args.queries < 100 or args.reps < 1:
        parser.error("--queries must be >= 100 and --reps >= 1")
    projects, seed, reps, cache_dir, out = (args.projects, args.seed, args.reps, args.cache_dir,
                                            args.out)
    texts = list(dict.fromkeys(project_text(p) for p in demo_projects(projects, seed=seed)))
    pairs = [("crafted", q) for q in CRAFTED] + generated_queries(args.queries, seed=11)
    query_texts = list(dict.fromkeys(q for _, q in pairs))

    fp32 = Embedder(cache_dir=cache_dir, threads=2, query_threads=1)
    fp32.load()
    int8_before = set(cache_dir.glob("*int8*.onnx"))
    start = time.perf_counter()
    int8 = Embedder(cache_dir=cache_dir, threads=1, query_threads=1, query_quantization="int8")
    int8.load()
    int8_load_s = time.perf_counter() - start
    query_file = Path(getattr(int8._encoder, "query_model_file"))  # noqa: B009
    fp32_file = Path(getattr(fp32._encoder, "query_model_file"))  # noqa: B009

    start = time.perf_counter()
    docs = np.vstack([fp32.encode(texts[i:i + 32], "document") for i in range(0, len(texts), 32)])
    docs_s = time.perf_counter() - start
    same_docs = float(np.abs(int8.encode(texts[:64], "document") - docs[:64]).max())

    q32 = np.vstack([fp32.encode([q], "query") for q in query_texts])
    q8 = np.vstack([int8.encode([q], "query") for q in query_texts])
    cosine = np.sum(q32 * q8, axis=1)
    truth_scores = q32 @ docs.T
    truth = top_k(truth_scores, K)
    found = top_k(q8 @ docs.T, K)
    recall = np.array([len(set(t) & set(f)) / K for t, f in zip(truth, found, strict=True)])
    # Tie-aware: an int8 hit whose fp32 score equals the 10th best (within 1e-6) is as good.
    kth = np.take_along_axis(truth_scores, truth[:, -1:], axis=1)
    # How dense the corpus is at the cut: fp32 score of the 10th minus the 11th best.
    gap = kth[:, 0] - np.take_along_axis(truth_scores, top_k(truth_scores, K + 1)[:, -1:], axis=1)[:, 0]
    shift = np.abs(q8 @ docs.T - truth_scores).max(axis=1)  # int8's largest score change
    tie_recall = (np.take_along_axis(truth_scores, found, axis=1) >= kth - 1e-6).mean(axis=1)
    languages = {q: lang for lang, q in reversed(pairs)}
    by_language = {lang: round(float(np.mean([r for q, r in zip(query_texts, recall, strict=True)
                                              if languages[q] == lang])), 4)
                   for lang in ("de", "en", "crafted")}

    for q in query_texts[:20]:  # warm-up
        fp32.encode([q], "query")
        int8.encode([q], "query")
    single: dict[str, list[float]] = {"fp32": [], "int8": []}
    batch: dict[str, list[float]] = {"fp32": [], "int8": []}
    batches = [query_texts[i:i + 8] for i in range(0, len(query_texts) - 7, 8)]
    for rep in range(reps):  # interleaved, order alternating per repetition
        order = [("fp32", fp32), ("int8", int8)][:: 1 if rep % 2 == 0 else -1]
        for q in query_texts:
            for name, model in order:
                single[name].append(timed(model, [q]))
        for b in batches:
            for name, model in order:
                batch[name].append(timed(model, b))
    latency = {"single_query": {k: stats_ms(v) for k, v in single.items()},
               "batch_of_8": {k: stats_ms(v) for k, v in batch.items()}}
    speedup_single = latency["single_query"]["fp32"]["p50"] / latency["single_query"]["int8"]["p50"]
    speedup_batch = latency["batch_of_8"]["fp32"]["p50"] / latency["batch_of_8"]["int8"]["p50"]
    recall_mean = float(recall.mean())

    import onnxruntime

    report: dict[str, Any] = {
        "corpus": {"projects": projects, "distinct_texts": len(texts), "seed": seed,
                   "document_embed_s": round(docs_s, 1)},
        "queries": {"count": len(query_texts),
                    "by_kind": {k: sum(1 for q in query_texts if languages[q] == k)
                                for k in ("de", "en", "crafted")}},
        "int8_model": {"file": query_file.name, "built_now": query_file not in int8_before,
                       "load_s_including_build": round(int8_load_s, 2),
                       "size_mb": round(query_file.stat().st_size / 1e6, 1),
                       "fp32_size_mb": round(fp32_file.stat().st_size / 1e6, 1)},
        "quality": {
            "recall_at_10_mean": round(recall_mean, 4),
            "recall_at_10_min": round(float(recall.min()), 2),
            "recall_at_10_tie_aware_mean": round(float(tie_recall.mean()), 4),
            "recall_at_10_by_kind": by_language,
            "queries_with_recall_below_1": int((recall < 1).sum()),
            "fp32_score_gap_10th_11th_median": round(float(np.median(gap)), 5),
            "int8_max_score_change_per_query_median": round(float(np.median(shift)), 5),
            "top1_agreement": round(float(np.mean(truth[:, 0] == found[:, 0])), 4),
            "cosine_int8_vs_fp32_mean": round(float(cosine.mean()), 4),
            "cosine_int8_vs_fp32_min": round(float(cosine.min()), 4),
            "query_norm_int8_max_deviation": float(np.abs(np.linalg.norm(q8, axis=1) - 1).max()),
            "document_vectors_max_abs_diff": same_docs,
        },
        "latency_ms": {**latency, "speedup_p50_single": round(speedup_single, 2),
                       "speedup_p50_batch_of_8": round(speedup_batch, 2), "threads": 1,
                       "reps": reps},
        "gate": {"min_recall_at_10": MIN_RECALL,
                 "recall_ok": recall_mean >= MIN_RECALL,
                 "faster": speedup_single > 1 and speedup_batch > 1,
                 "recommend_int8": recall_mean >= MIN_RECALL and speedup_single > 1
                 and speedup_batch > 1},
        "machine": {"cpus": os.cpu_count(), "onnxruntime": onnxruntime.__version__},
    }
    fp32.close()
    int8.close()
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


if __name__ == "__main__":
    main()
