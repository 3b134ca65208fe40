"""The HTTP contract, in process: the app with stand-in services (no broker, index or model),
so each rule of the published schema is pinned by a fast test. The same app runs against
the real service, fuzzed with every schemathesis check, in tests/integration/test_api_fuzz.py.

Pinned here (issue #11): a boolean is not a number; a body that is not JSON is a 422 like any
other invalid input, on every route; a 405 names every method of the path in ``Allow``;
blank text filters are rejected; every error has one shape and never echoes the input; the
OpenAPI document describes all of it, with examples and links."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from handwerk.api.app import create_app
from handwerk.api.routers.admin import ReindexIn
from handwerk.api.schemas import DeletedOut, Filters, FindSimilarOut, ProjectOut, ProjectPageOut
from handwerk.outbox.project_fields import ProjectFields
from handwerk.outbox.store import ProjectNotFound
from handwerk.settings import Settings

PROJECT: dict[str, Any] = {
    "name": "Landhausküche Eiche", "description": "Küche mit Kochinsel", "project_type": "kitchen",
    "region": "Bayern", "total_area_sqm": 18.5, "wood_type": "Eiche", "complexity": 3,
    "final_price": 32000}
KNOWN = str(uuid.uuid4())
CREATE, ITEM = "/api/v1/projects/", f"/api/v1/projects/{KNOWN}"
FIND, BATCH = "/api/v1/similarity/find-similar", "/api/v1/similarity/batch-similar"
BODY_ROUTES = [("POST", CREATE, PROJECT), ("PUT", ITEM, PROJECT),
               ("POST", FIND, {"query": "Küche"}), ("POST", BATCH, {"queries": ["Küche"]}),
               ("POST", "/api/v1/estimate", {"description": "Küche", "project_type": "kitchen",
                                              "total_area_sqm": 12, "complexity": 3})]
MAX_BODY = 50_000


class FakeProjects:
    """Stands in for ProjectService: records what the routers hand it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def _out(self, project_id: str, fields: ProjectFields) -> ProjectOut:
        now = datetime.now(UTC)
        return ProjectOut(id=project_id, version=1, indexed_version=None, created_at=now,
                          updated_at=now, **fields.model_dump())

    async def create(self, fields: ProjectFields, wait_s: float | None) -> ProjectOut:
        self.calls.append(("create", fields))
        return self._out(str(uuid.uuid4()), fields)

    async def update(self, project_id: str, fields: ProjectFields, wait_s: float | None) -> ProjectOut:
        self.calls.append(("update", fields))
        if project_id != KNOWN:
            raise ProjectNotFound(project_id)
        return self._out(project_id, fields)

    async def delete(self, project_id: str, wait_s: float | None) -> DeletedOut:
        if project_id != KNOWN:
            raise ProjectNotFound(project_id)
        return DeletedOut(id=project_id, version=2, indexed_version=None)

    async def get(self, project_id: str) -> ProjectOut:
        raise ProjectNotFound(project_id)

    async def list(self, *, limit: int, offset: int, project_type: str | None,
                   region: str | None, after: object = None) -> ProjectPageOut:
        self.calls.append(("list", {"project_type": project_type, "region": region}))
        return ProjectPageOut(items=[], total=0, limit=limit, offset=offset)


class FakeSearch:
    def __init__(self) -> None:
        self.filters: list[Filters | None] = []

    async def find_similar(self, query: str, *, top_k: int, threshold: float,
                           filters: Filters | None, mode: str | None = None) -> FindSimilarOut:
        self.filters.append(filters)
        return FindSimilarOut(query=query, results=[], total_found=0, search_time_ms=0.1,
                              mode=mode or "dense")

    async def batch_similar(self, queries: Sequence[str], *, top_k: int, threshold: float,
                            filters: Filters | None, mode: str | None = None,
                            ) -> tuple[list[FindSimilarOut], float]:
        self.filters.append(filters)
        return [FindSimilarOut(query=q, results=[], total_found=0, search_time_ms=0.1,
                               mode=mode or "dense") for q in queries], 0.1


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    # The lifespan (runtime, index, model) never runs: the routers get the stand-ins.
    return create_app(Settings(data_dir=Path(tmp_path_factory.mktemp("api")),
                               max_body_bytes=MAX_BODY, auth_mode="off",  # keys: test_api_keys
                               allowed_hosts=["testserver"]))  # TestClient's Host


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    from handwerk.api.estimate.service import EstimateService
    from tests.unit.test_api_estimate import PricedSearch  # it imports this module

    app.state.projects, app.state.search = FakeProjects(), FakeSearch()
    app.state.estimate = EstimateService(PricedSearch())  # type: ignore[arg-type]
    with_client = TestClient(app, raise_server_exceptions=False)
    yield with_client
    with_client.close()


def assert_error(response: Any, status: int) -> list[dict[str, Any]]:
    """The one error shape: a list of (loc, msg, type), nothing else, nothing large."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], list) and body["detail"]
    for item in body["detail"]:
        assert set(item) == {"loc", "msg", "type"}
        assert isinstance(item["loc"], list) and isinstance(item["msg"], str)
        assert all(isinstance(part, str | int) for part in item["loc"])
        assert isinstance(item["type"], str) and item["type"]
    assert len(response.content) < 5_000
    return body["detail"]  # type: ignore[no-any-return]


# Tests named test_guard_* held before issue #11 too: they keep the new strictness from
# overshooting (or a fix from undoing an old rule). Every other test failed before it.

# A boolean is not a number, a string is not an integer: exactly what the schema says.

@pytest.mark.parametrize(("method", "path", "body", "loc"), [
    ("POST", CREATE, {**PROJECT, "final_price": False}, ["body", "final_price"]),
    ("POST", CREATE, {**PROJECT, "total_area_sqm": True}, ["body", "total_area_sqm"]),
    ("POST", CREATE, {**PROJECT, "complexity": True}, ["body", "complexity"]),
    ("POST", CREATE, {**PROJECT, "complexity": "3"}, ["body", "complexity"]),
    ("POST", CREATE, {**PROJECT, "final_price": "32000"}, ["body", "final_price"]),
    ("PUT", ITEM, {**PROJECT, "final_price": False}, ["body", "final_price"]),
    ("POST", FIND, {"query": "Küche", "filters": {"max_price": False}}, ["body", "filters", "max_price"]),
    ("POST", FIND, {"query": "Küche", "filters": {"min_price": True}}, ["body", "filters", "min_price"]),
    ("POST", FIND, {"query": "Küche", "top_k": True}, ["body", "top_k"]),
    ("POST", FIND, {"query": "Küche", "top_k": "5"}, ["body", "top_k"]),
    ("POST", FIND, {"query": "Küche", "threshold": False}, ["body", "threshold"]),
    ("POST", BATCH, {"queries": ["Küche"], "filters": {"max_price": False}},
     ["body", "filters", "max_price"]),
    ("POST", BATCH, {"queries": ["Küche"], "top_k": True}, ["body", "top_k"]),
])
def test_json_types_are_exactly_what_the_schema_says(client: TestClient, method: str, path: str,
                                                     body: dict[str, Any], loc: list[str]) -> None:
    errors = assert_error(client.request(method, path, json=body), 422)
    assert [e["loc"] for e in errors] == [loc]
    assert errors[0]["type"] in ("float_type", "int_type")


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", CREATE, {**PROJECT, "final_price": 32000, "total_area_sqm": 18}),  # ints are numbers
    ("POST", CREATE, {**PROJECT, "complexity": 3.0}),  # and 3.0 is an integer (JSON Schema)
    ("POST", FIND, {"query": "Küche", "top_k": 5.0, "threshold": 0, "filters": {"max_price": 5}}),
    ("POST", BATCH, {"queries": ["Küche"], "filters": {"min_price": 0, "project_type": None}}),
])
def test_guard_numbers_the_schema_allows_are_accepted(client: TestClient, method: str, path: str,
                                                body: dict[str, Any]) -> None:
    assert client.request(method, path, json=body).status_code in (200, 201)


@pytest.mark.parametrize("query", ["limit=1_0", "limit=%205", "limit=%2B5",
                                   "project_type=kitchen&unknown=1"])
def test_query_parameters_are_parsed_exactly(client: TestClient, query: str) -> None:
    """Query text is a number only in the JSON number grammar; unknown parameters are errors."""
    assert_error(client.get(f"/api/v1/projects?{query}"), 422)


@pytest.mark.parametrize("query", ["limit=true", "limit=0x10", "limit=1.5", "offset=-1"])
def test_guard_query_parameters_still_rejected(client: TestClient, query: str) -> None:
    assert_error(client.get(f"/api/v1/projects?{query}"), 422)


@pytest.mark.parametrize(("method", "path"), [("POST", CREATE), ("PUT", ITEM), ("DELETE", ITEM)])
@pytest.mark.parametrize("value", ["true", "nan", "1e400", "31"])
def test_guard_wait_indexed_is_a_bounded_number(client: TestClient, method: str, path: str,
                                          value: str) -> None:
    body = PROJECT if method != "DELETE" else None
    errors = assert_error(client.request(method, f"{path}?wait_indexed={value}", json=body), 422)
    assert errors[0]["loc"] == ["query", "wait_indexed"]


def test_query_numbers_in_json_grammar_are_accepted(client: TestClient) -> None:
    assert client.get("/api/v1/projects?limit=5&offset=0").status_code == 200
    assert client.get("/api/v1/projects?limit=5.0&offset=1e1").status_code == 200
    assert client.post(f"{CREATE}?wait_indexed=0.5", json=PROJECT).status_code == 201


# A body that is not JSON: 422 with the reason, on every route that takes a body.

@pytest.mark.parametrize(("method", "path", "_body"), BODY_ROUTES)
@pytest.mark.parametrize("raw", [
    b"\x1d^tDk\xc3\x28",  # not UTF-8 (FastAPI itself answers an undocumented 400)
    b"\xff\xfe\xfd",
    b"[" * 20_000 + b"]" * 20_000,  # deeper than the recursion limit (ditto)
])
def test_body_that_is_not_json_is_a_validation_error(client: TestClient, method: str, path: str,
                                                     _body: Any, raw: bytes) -> None:
    response = client.request(method, path, content=raw, headers={"content-type": "application/json"})
    errors = assert_error(response, 422)
    assert errors[0]["type"] == "json_invalid" and errors[0]["loc"][0] == "body"


@pytest.mark.parametrize(("method", "path", "_body"), BODY_ROUTES)
def test_guard_malformed_json_is_a_validation_error(client: TestClient, method: str, path: str,
                                                    _body: Any) -> None:
    response = client.request(method, path, content=b"{not json",
                              headers={"content-type": "application/json"})
    assert assert_error(response, 422)[0]["type"] == "json_invalid"


@pytest.mark.parametrize(("method", "path", "_body"), BODY_ROUTES)
def test_guard_missing_or_non_object_body_is_a_validation_error(client: TestClient, method: str,
                                                          path: str, _body: Any) -> None:
    assert_error(client.request(method, path), 422)
    assert_error(client.request(method, path, json=[1, 2]), 422)
    assert_error(client.request(method, path, content=b'"x"',
                                headers={"content-type": "text/plain"}), 422)


# 405 names every method of the path (RFC 9110 15.5.6).

@pytest.mark.parametrize(("method", "path", "allow"), [
    ("OPTIONS", ITEM, "DELETE, GET, PUT"),
    ("POST", ITEM, "DELETE, GET, PUT"),
    ("PATCH", "/api/v1/projects/not-a-uuid", "DELETE, GET, PUT"),
    ("OPTIONS", CREATE, "POST"),
    ("DELETE", "/api/v1/projects", "GET"),
    ("GET", FIND, "POST"),
    ("OPTIONS", "/api/v1/similarity/stats", "GET"),
])
def test_method_not_allowed_names_every_allowed_method(client: TestClient, method: str, path: str,
                                                       allow: str) -> None:
    response = client.request(method, path)
    errors = assert_error(response, 405)
    assert response.headers["allow"] == allow
    assert errors[0]["type"] == "method_not_allowed"


# Blank text filters mean nothing (no project has a blank type or region): rejected.

@pytest.mark.parametrize("path", [FIND, BATCH])
@pytest.mark.parametrize(("field", "value"), [
    ("project_type", ""), ("region", ""), ("project_type", " \t"), ("region", "\u3000"),
    ("region", "\x1c")])
def test_blank_text_filters_are_rejected(client: TestClient, path: str, field: str,
                                         value: str) -> None:
    base: dict[str, Any] = {"query": "Küche"} if path == FIND else {"queries": ["Küche"]}
    errors = assert_error(client.post(path, json={**base, "filters": {field: value}}), 422)
    assert errors[0]["loc"] == ["body", "filters", field]


@pytest.mark.parametrize("query", ["project_type=", "region=", "region=%20%20"])
def test_blank_list_filters_are_rejected(client: TestClient, query: str) -> None:
    assert_error(client.get(f"/api/v1/projects?{query}"), 422)


def test_text_filters_are_trimmed_like_stored_projects(client: TestClient) -> None:
    assert client.post(FIND, json={"query": "Küche", "filters": {
        "project_type": " kitchen ", "region": "Bayern\n"}}).status_code == 200
    assert client.app.state.search.filters == [  # type: ignore[attr-defined]
        Filters(project_type="kitchen", region="Bayern")]
    assert client.get("/api/v1/projects?project_type=%20kitchen").status_code == 200
    assert client.app.state.projects.calls == [  # type: ignore[attr-defined]
        ("list", {"project_type": "kitchen", "region": None})]


def test_length_limits_hold_for_the_text_as_sent(client: TestClient) -> None:
    # maxLength 100 in the schema: 99 spaces around one letter are 101 characters, too long.
    errors = assert_error(client.post(CREATE, json={**PROJECT, "region": " " * 99 + "x" + " "}), 422)
    assert errors[0]["loc"] == ["body", "region"]
    assert client.post(CREATE, json={**PROJECT, "region": "  Bayern "}).status_code == 201
    assert client.app.state.projects.calls[-1][1].region == "Bayern"  # type: ignore[attr-defined]


@pytest.mark.parametrize("field", ["name", "description", "project_type", "region", "wood_type"])
def test_text_with_nul_is_refused_before_the_database(client: TestClient, field: str) -> None:
    # PostgreSQL cannot store U+0000 in text: without this the write would be a 500 there.
    errors = assert_error(client.post(CREATE, json={**PROJECT, field: "Eiche\x00massiv"}), 422)
    assert errors[0]["loc"] == ["body", field]
    assert_error(client.get("/api/v1/projects", params={"region": "Bay\x00ern"}), 422)


# One error shape for every 4xx, never echoing the input.

def test_every_error_has_one_shape(client: TestClient) -> None:
    missing = str(uuid.uuid4())
    errors = assert_error(client.get(f"/api/v1/projects/{missing}"), 404)
    assert errors == [{"loc": ["path", "project_id"], "msg": f"project {missing} not found",
                       "type": "not_found"}]
    assert assert_error(client.delete(f"/api/v1/projects/{missing}"), 404)[0]["type"] == "not_found"
    assert assert_error(client.get("/no/such/route"), 404)[0]["type"] == "not_found"
    assert assert_error(client.get("/api/v1/projects/not-a-uuid"), 422)[0]["loc"] == [
        "path", "project_id"]
    errors = assert_error(client.post(FIND, json={"query": "x", "filters": {"max_price": -1}}), 422)
    assert errors == [{"loc": ["body", "filters", "max_price"], "type": "greater_than_equal",
                       "msg": "Input should be greater than or equal to 0"}]


def test_too_large_body_is_413_in_the_error_shape(client: TestClient) -> None:
    big = {"query": "x" * (MAX_BODY + 1)}
    errors = assert_error(client.post(FIND, json=big), 413)
    assert errors[0]["loc"] == ["body"] and errors[0]["type"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no content-length: the limit trips while FastAPI reads
        yield b'{"query": "'
        for _ in range(MAX_BODY // 1000 + 1):
            yield b"x" * 1000
        yield b'"}'

    response = client.post(FIND, content=chunks(), headers={"content-type": "application/json"})
    assert assert_error(response, 413)[0]["type"] == "too_large"


def test_errors_never_echo_the_input(client: TestClient) -> None:
    huge_key, huge_value = "k" * 20_000, "v" * 20_000
    response = client.post(FIND, json={"query": "x", huge_key: 1, "top_k": huge_value})
    errors = assert_error(response, 422)
    assert huge_value not in response.text and "k" * 101 not in response.text
    assert {e["type"] for e in errors} == {"extra_forbidden", "int_type"}
    # an unknown field whose name JSON-as-UTF-8 cannot carry: still a 422, not a 500
    response = client.post(FIND, content=b'{"query": "x", "\\ud800": 1}',
                           headers={"content-type": "application/json"})
    assert_error(response, 422)
    response = client.post(FIND, content=b'{"query": "\\ud800"}',
                           headers={"content-type": "application/json"})
    assert assert_error(response, 422)[0]["loc"] == ["body", "query"]


# The OpenAPI document says all of this.

@pytest.fixture(scope="module")
def openapi(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def _operations(openapi: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def _is_error_shape(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return schema.get("$ref") == "#/components/schemas/ErrorOut"


def test_openapi_documents_the_error_shape_on_every_route(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["ErrorOut"]["properties"]["detail"]["items"] == {"$ref": "#/components/schemas/ErrorItem"}
    assert set(schemas["ErrorItem"]["required"]) == {"loc", "msg", "type"}
    for method, path, operation in _operations(openapi):
        responses = operation["responses"]
        assert _is_error_shape(responses["413"]), (method, path)
        if operation.get("parameters") or operation.get("requestBody"):
            assert _is_error_shape(responses["422"]), (method, path)
        for code, response in responses.items():
            if code.startswith("4"):
                assert _is_error_shape(response), (method, path, code)
    for path in (CREATE.rstrip("/") + "/{project_id}",):
        for method in ("get", "put", "delete"):
            assert _is_error_shape(openapi["paths"][path][method]["responses"]["404"])


def test_openapi_has_valid_examples_on_every_request_body(openapi: dict[str, Any],
                                                         client: TestClient) -> None:
    bodies = 0
    for method, path, operation in _operations(openapi):
        if "requestBody" not in operation:
            continue
        bodies += 1
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        examples = openapi["components"]["schemas"][ref.rsplit("/", 1)[-1]].get("examples")
        assert examples, (method, path)
        for example in examples:  # each one is accepted as it stands
            if path.startswith("/api/v1/admin/"):  # would start a reindex: the model decides
                ReindexIn.model_validate(example)
                continue
            response = client.request(method, path.replace("{project_id}", KNOWN), json=example)
            assert response.status_code in (200, 201), (method, path, response.text)
    assert bodies == 6


def test_openapi_links_follow_a_created_project(openapi: dict[str, Any]) -> None:
    item = openapi["paths"]["/api/v1/projects/{project_id}"]
    ids = {method: item[method]["operationId"] for method in ("get", "put", "delete")}
    links = openapi["paths"][CREATE]["post"]["responses"]["201"]["links"]
    assert {link["operationId"] for link in links.values()} == set(ids.values())
    assert all(link["parameters"] == {"project_id": "$response.body#/id"} for link in links.values())
    assert {link["operationId"] for link in item["put"]["responses"]["200"]["links"].values()} == {
        ids["get"], ids["delete"]}
    assert {link["operationId"] for link in item["delete"]["responses"]["200"]["links"].values()} == {
        ids["get"]}


def test_guard_openapi_uses_only_json_schema_keywords(openapi: dict[str, Any]) -> None:
    text = json.dumps(openapi)
    for leaked in ('"ge":', '"le":', '"gt":', '"lt":', '"strict":', '"allow_inf_nan":'):
        assert leaked not in text


def test_schema_says_what_blank_filters_mean(openapi: dict[str, Any]) -> None:
    filters = openapi["components"]["schemas"]["Filters"]
    assert "blank text filter is rejected" in " ".join(filters["description"].split())
    for field in ("project_type", "region"):
        text_schema = filters["properties"][field]["anyOf"][0]
        assert text_schema["minLength"] == 1 and text_schema["pattern"].startswith("^[^\\x00]*[^")


def test_request_model_covers_the_store_model_exactly() -> None:
    """The API's strict ProjectIn and the store's ProjectFields must not drift apart."""
    from handwerk.api.schemas import ProjectIn

    assert list(ProjectIn.model_fields) == list(ProjectFields.model_fields)
    example = ProjectIn.model_json_schema()["examples"][0]
    assert ProjectIn.model_validate(example).to_fields() == ProjectFields.model_validate(example)


def test_list_cursor_must_be_one_this_api_made(client: TestClient) -> None:
    from handwerk.api.cursor import encode_cursor

    for bad in ("abc", "0", "eyJ9", "W10"):  # well-formed text, no position we handed out
        r = client.get(f"/api/v1/projects?cursor={bad}")
        assert r.status_code == 404 and "not a cursor" in r.text, bad
    for malformed in ("x" * 201, "a b"):
        assert client.get(f"/api/v1/projects?cursor={malformed}").status_code == 422
    good = encode_cursor(datetime.now(UTC), KNOWN)
    assert client.get(f"/api/v1/projects?cursor={good}").status_code == 200
    assert client.get(f"/api/v1/projects?cursor={good}&offset=5").status_code == 200
