"""POST /api/v1/estimate (issue 21 §1) in process: the real app, router, service and pricing
over a stand-in search (no index or model; the real service is priced end to end by
tests/integration/test_relevance_eval.py and fuzzed by test_api_fuzz.py).

Pinned: the answer's shape (estimate inside its interval, the neighbours with their weights
and adjustments, the method); the job's type is the type filter; too few comparable projects
is a 422 in the one error shape that never echoes the input; far neighbours are marked weak;
the route is documented and needs the read scope like find-similar."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from handwerk.api.app import create_app
from handwerk.api.estimate.service import EstimateService, query_text
from handwerk.api.schemas import EstimateIn, Filters, FindSimilarOut, SimilarProject
from handwerk.settings import Settings
from tests.unit.test_api_contract import FakeProjects, assert_error

ESTIMATE = "/api/v1/estimate"
JOB: dict[str, Any] = {"description": "Landhausküche in Eiche mit Kochinsel",
                       "project_type": "kitchen", "total_area_sqm": 20, "wood_type": "Eiche",
                       "complexity": 4, "region": "Bayern"}


class PricedSearch:
    """Stands in for SearchService: ``count`` kitchens at 1000 €/m² times (0.8 + 0.1 ×
    complexity), each of similarity ``similarity``; records what it was asked."""

    def __init__(self, count: int = 12, similarity: float = 0.8) -> None:
        self.count, self.similarity = count, similarity
        self.asked: list[tuple[str, int, Filters | None, str | None]] = []

    async def find_similar(self, query: str, *, top_k: int, threshold: float,
                           filters: Filters | None, mode: str | None = None) -> FindSimilarOut:
        self.asked.append((query, top_k, filters, mode))
        kind = filters.project_type if filters and filters.project_type else "kitchen"
        hits = [SimilarProject(
            id=str(uuid.UUID(int=i + 1)), version=1, similarity=self.similarity,
            name=f"Küche {i}", description="Küche", project_type=kind, region="Bayern",
            total_area_sqm=10.0, wood_type="Eiche" if i % 2 else "Buche",
            complexity=1 + i % 5, final_price=10.0 * 1000 * (0.8 + 0.1 * (1 + i % 5)))
            for i in range(min(top_k, self.count))]
        return FindSimilarOut(query=query, results=hits, total_found=len(hits),
                              search_time_ms=0.1, mode=mode or "dense")

    async def batch_similar(self, queries: Sequence[str], **kw: Any
                            ) -> tuple[list[FindSimilarOut], float]:
        return [await self.find_similar(q, **kw) for q in queries], 0.1


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    return create_app(Settings(data_dir=Path(tmp_path_factory.mktemp("api")), auth_mode="off",
                               allowed_hosts=["testserver"]))


def client_with(app: FastAPI, search: PricedSearch) -> TestClient:
    app.state.projects, app.state.search = FakeProjects(), search
    app.state.estimate = EstimateService(search, neighbours=40, min_neighbours=5,  # type: ignore[arg-type]
                                         coverage=0.8, weak_similarity=0.5)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def search() -> PricedSearch:
    return PricedSearch()


@pytest.fixture
def client(app: FastAPI, search: PricedSearch) -> Iterator[TestClient]:
    c = client_with(app, search)  # not entered: the lifespan (runtime, index, model) never runs
    yield c
    c.close()


def test_an_estimate_rests_on_its_neighbours_and_says_how(client: TestClient,
                                                         search: PricedSearch) -> None:
    response = client.post(ESTIMATE, json=JOB)
    assert response.status_code == 200, response.text
    body = response.json()
    # every neighbour costs exactly 1000 × (0.8 + 0.1 c) per m²: adjusted to complexity 4,
    # each is 1200 €/m²; the job has 20 m²
    assert body["price_per_sqm"] == pytest.approx(1200, rel=0.05)
    assert body["estimated_price"] == pytest.approx(24_000, rel=0.01)
    interval = body["interval"]
    assert interval["low"] <= body["estimated_price"] <= interval["high"]
    assert interval["coverage"] == 0.8
    assert body["method"] == "complexity/equal" and body["weak"] is False and body["note"] is None
    assert len(body["neighbours"]) == 12
    assert sum(n["weight"] for n in body["neighbours"]) == pytest.approx(1.0, abs=1e-4)
    for n in body["neighbours"]:
        assert n["price_per_sqm"] == pytest.approx(n["final_price"] / n["total_area_sqm"])
        assert n["adjustment"]["factor"] == pytest.approx(
            n["adjustment"]["complexity"] * n["adjustment"]["wood"])
        assert n["price_per_sqm"] * n["adjustment"]["factor"] == pytest.approx(1200, rel=0.05)
    assert body["estimate_time_ms"] >= 0 and body["mode"] == "dense"
    (query, top_k, filters, mode), = search.asked
    assert query == query_text(EstimateIn.model_validate(JOB)) and "Landhausküche" in query
    assert top_k == 40 and filters == Filters(project_type="kitchen") and mode is None


def test_the_jobs_type_is_the_type_filter_and_other_filters_pass(client: TestClient,
                                                                 search: PricedSearch) -> None:
    job = {**JOB, "mode": "hybrid",
           "filters": {"project_type": "stairs", "region": "Berlin", "max_price": 90_000}}
    assert client.post(ESTIMATE, json=job).status_code == 200
    (_, _, filters, mode), = search.asked
    assert filters == Filters(project_type="kitchen", region="Berlin", max_price=90_000)
    assert mode == "hybrid"


def test_without_complexity_nothing_is_adjusted(client: TestClient) -> None:
    body = client.post(ESTIMATE, json={k: v for k, v in JOB.items() if k != "complexity"}).json()
    assert {n["adjustment"]["factor"] for n in body["neighbours"]} == {1.0}
    assert body["complexity_step"] == 1.0


def test_too_few_comparables_is_a_422_never_a_made_up_number(app: FastAPI) -> None:
    client = client_with(app, PricedSearch(count=4))
    response = client.post(ESTIMATE, json={**JOB, "description": "Geheimnis-XYZ"})
    (item,) = assert_error(response, 422)
    assert item["type"] == "too_few_comparables" and item["loc"] == ["body"]
    assert "4" in item["msg"] and "5" in item["msg"] and "Geheimnis" not in response.text


def test_far_neighbours_mark_the_estimate_weak(app: FastAPI) -> None:
    body = client_with(app, PricedSearch(similarity=0.2)).post(ESTIMATE, json=JOB).json()
    assert body["weak"] is True and "0.20" in body["note"] and "0.50" in body["note"]


@pytest.mark.parametrize("change", [
    {"total_area_sqm": 0}, {"total_area_sqm": -1}, {"complexity": 6}, {"complexity": 2.5},
    {"description": "   "}, {"wood_type": ""}, {"final_price": 1000}, {"mode": "fuzzy"},
    {"total_area_sqm": True}])
def test_invalid_jobs_are_refused_in_the_one_shape(client: TestClient,
                                                    change: dict[str, Any]) -> None:
    assert_error(client.post(ESTIMATE, json={**JOB, **change}), 422)


@pytest.mark.parametrize("missing", ["description", "project_type", "total_area_sqm"])
def test_required_fields(client: TestClient, missing: str) -> None:
    assert_error(client.post(ESTIMATE, json={k: v for k, v in JOB.items() if k != missing}), 422)


def test_documented_with_an_example_and_the_refusal(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"][ESTIMATE]["post"]
    assert {"200", "422", "503"} <= set(operation["responses"])
    assert "too_few_comparables" in operation["responses"]["422"]["description"]
    schema = document["components"]["schemas"]["EstimateIn"]
    assert set(schema["required"]) == {"description", "project_type", "total_area_sqm"}
    assert schema["examples"]


def test_reads_need_the_read_scope_where_reads_are_protected(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, auth_mode="required", auth_protect_reads=True,
                              allowed_hosts=["testserver"]))
    security = app.openapi()["paths"][ESTIMATE]["post"]["security"]
    find = app.openapi()["paths"]["/api/v1/similarity/find-similar"]["post"]["security"]
    assert security == find and security
