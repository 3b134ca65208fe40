"""Schemathesis against the app's own OpenAPI schema over real HTTP: no 5xx, no response
that violates the schema, whatever the input."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import Stack
from tests.integration.server import Server, isolated_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fuzz_server(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("fuzz")
    server = Server(isolated_env(stack.env, folder / "data", HANDWERK_WAIT_INDEXED_MAX_S="1"),
                    folder / "serve.log").start()
    try:
        server.wait_ready()
        yield server
    finally:
        assert server.stop() == 0


def test_no_server_errors_and_responses_match_schema(fuzz_server: Server) -> None:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    checks = [not_a_server_error, response_schema_conformance, content_type_conformance,
              status_code_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def exercise(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=fuzz_server.url, checks=checks)

        exercise()
