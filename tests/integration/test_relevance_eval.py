"""`handwerk eval` end to end: a real `handwerk serve` with the default model (multilingual-e5-small,
int8 through ONNX Runtime) and with the bundled all-MiniLM-L6-v2, the German demo corpus loaded
through the REST API, every class of queries through find-similar, scored; the figures must not
fall below a floor a little under what was measured. A re-run loads nothing twice. Then
held-out projects priced through /api/v1/estimate, against two baselines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from handwerk.cli.main import app
from handwerk.embedding.specs import DEFAULT_MODEL_NAME, E5_ONNX_MODEL_NAME
from tests.conftest import Stack
from tests.integration.server import Server, isolated_env
from tooling.relevance import CLASSES, all_queries

pytestmark = pytest.mark.integration

PROJECTS = 300
# nDCG@10 floors at 300 projects with every query (`handwerk eval --load 300`; the 7 queries
# with no relevant project among 300 are left out), each a little under the figure measured
# here (2 shared cores; next to each floor), for the default mode (hybrid) and for dense alone.
# Relevance does not depend on timing, so only a real loss of quality (model, text, analyzer,
# fusion, search path) fails them.
FLOORS = {  # model: {mode: {class: (floor, measured)}}
    E5_ONNX_MODEL_NAME: {  # the default since 2026-12-08; measured that day
        "dense": {
            "overall": (0.64, 0.681),
            "own_words": (0.82, 0.856),
            "paraphrase_de": (0.61, 0.649),
            "english_to_german": (0.31, 0.353),
            "german_to_english": (0.46, 0.499),
            "keywords": (0.66, 0.701),
            "typos": (0.73, 0.768),
            "filtered": (0.81, 0.850),
            "estimator": (0.70, 0.737),
        },
        "hybrid": {
            "overall": (0.67, 0.711),
            "own_words": (0.88, 0.917),
            "paraphrase_de": (0.59, 0.632),
            "english_to_german": (0.33, 0.367),
            "german_to_english": (0.43, 0.476),
            "keywords": (0.76, 0.803),
            "typos": (0.76, 0.800),
            "filtered": (0.80, 0.837),
            "estimator": (0.76, 0.799),
        },
    },
    DEFAULT_MODEL_NAME: {  # measured 2026-12-07
        "dense": {
            "overall": (0.47, 0.508),
            "own_words": (0.65, 0.689),
            "paraphrase_de": (0.28, 0.321),
            "keywords": (0.56, 0.603),
            "filtered": (0.65, 0.692),
            "estimator": (0.48, 0.525),
        },
        "hybrid": {  # with German compound splitting in the keyword analyzer
            "overall": (0.60, 0.644),
            "own_words": (0.81, 0.851),
            "paraphrase_de": (0.44, 0.481),
            "keywords": (0.74, 0.782),
            "filtered": (0.75, 0.790),
            "estimator": (0.68, 0.719),
        },
    },
}
MODEL_SETTING = {E5_ONNX_MODEL_NAME: None, DEFAULT_MODEL_NAME: "bundled"}


# Price estimates (issue 21 §2): the 200 demo projects after the loaded 300 (never loaded)
# priced through /api/v1/estimate. The served method must beat both baselines (median price
# per m² of the type; of the type and wood) on MAPE and median APE, its interval's coverage
# must be within 10 points of the stated 80 %, and its MAPE must stay under a ceiling a little
# above what was measured (mode: (ceiling, measured)). Deterministic like relevance: the same
# neighbours every run.
ESTIMATE_MAPE_CEILING = {  # model: {mode: (ceiling, measured)}
    E5_ONNX_MODEL_NAME: {"hybrid": (0.30, 0.2829), "dense": (0.30, 0.2821)},  # 2026-12-08
    DEFAULT_MODEL_NAME: {"hybrid": (0.295, 0.2767), "dense": (0.295, 0.2784)},  # 2026-12-07
}


def assert_estimates_hold(document: dict[str, object], mode: str, model: str) -> None:
    section = document["estimate"]
    assert isinstance(section, dict), document.keys()
    print(model, mode, json.dumps({k: v for k, v in section.items() if k != "per_project"}))
    assert section["held_out"] == 200 and section["answered"] == 200, section
    served = section["methods"][section["method"]]
    for name, baseline in section["baselines"].items():
        for metric in ("mape", "median_ape"):
            assert served[metric] < baseline[metric], (name, metric, served, baseline)
    assert section["beats_baselines"]
    assert abs(served["coverage"] - section["coverage_stated"]) <= 0.10, served
    assert served["mape"] <= ESTIMATE_MAPE_CEILING[model][mode][0], served
    latency = section["latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"], latency


@pytest.fixture(params=list(FLOORS))
def server(request: pytest.FixtureRequest, stack: Stack, tmp_path: Path) -> Iterator[Server]:
    """serve on each model: the default one (no setting), and the bundled one by name."""
    setting = MODEL_SETTING[request.param]
    env = isolated_env(stack.env, tmp_path / "data",
                       **({"HANDWERK_MODEL_PATH": setting} if setting else {}))
    server = Server(env, tmp_path / "serve.log").start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def handwerk_eval(url: str, *args: str) -> str:
    """`handwerk eval` in this process; its output."""
    result = CliRunner().invoke(app, ["eval", "--url", url, "--load", str(PROJECTS), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_eval_scores_each_model_above_its_floor(server: Server, tmp_path: Path,
                                               request: pytest.FixtureRequest) -> None:
    model = request.node.callspec.params["server"]
    floors = FLOORS[model]
    out = tmp_path / "eval.json"
    output = handwerk_eval(server.url, "--json", str(out))  # the default mode: hybrid
    document = json.loads(out.read_text())
    assert document["corpus"]["created"] == PROJECTS and document["corpus"]["present"] == 0
    assert document["service"]["model"] == model
    assert document["service"]["answered_by"] == ["hybrid"]
    metrics = document["metrics"]
    assert set(metrics) == {*CLASSES, "overall"}
    assert metrics["overall"]["queries"] + len(document["queries"]["left_out"]) == len(all_queries())
    print(model, "hybrid", json.dumps({k: round(v["ndcg@10"], 3) for k, v in metrics.items()}))
    for name, (floor, _measured) in floors["hybrid"].items():
        assert metrics[name]["ndcg@10"] >= floor, (name, metrics[name])
    assert "overall" in output and "nDCG@10" in output
    assert_estimates_hold(document, "hybrid", model)
    assert "price estimates" in output and "baseline: type_median" in output

    again = handwerk_eval(server.url, "--mode", "dense", "--json", str(out))
    assert f"{PROJECTS} already there, creating 0" in again
    dense_document = json.loads(out.read_text())
    dense = dense_document["metrics"]
    assert_estimates_hold(dense_document, "dense", model)
    print(model, "dense", json.dumps({k: round(v["ndcg@10"], 3) for k, v in dense.items()}))
    for name, (floor, _measured) in floors["dense"].items():
        assert dense[name]["ndcg@10"] >= floor, (name, dense[name])
