"""What every process exports about itself: its role, its HTTP responses by status, and its
registry over HTTP where it has no API."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from handwerk import __version__
from handwerk.api.middleware import RequestMetrics
from handwerk.metrics import Metrics, MetricsServer
from handwerk.operations.lag import LagMonitor
from handwerk.process.runtime import Roles, Runtime
from handwerk.settings import Settings


def test_roles_name_the_command_they_are() -> None:
    assert Roles().name == "serve"
    assert Roles(relay=False).name == "serve"
    assert Roles(api=True, relay=False, consumer=False).name == "api"
    assert Roles(api=False, relay=True, consumer=False).name == "relay"
    assert Roles(api=False, relay=False, consumer=True).name == "consume"
    assert [r.watches_lag for r in (Roles(), Roles(api=True, relay=False, consumer=False),
                                    Roles(api=False, relay=True, consumer=False),
                                    Roles(api=False, relay=False, consumer=True))] \
        == [True, False, True, True]


def test_process_info_names_role_and_version() -> None:
    runtime = Runtime(Settings(), Roles(api=False, relay=True, consumer=False))
    assert runtime.metrics.registry.get_sample_value(
        "handwerk_ml_process_info", {"role": "relay", "version": __version__}) == 1


async def test_every_response_is_counted_by_method_route_and_status() -> None:
    async def item(request: Request) -> Response:
        code = int(request.path_params["code"])
        return JSONResponse({}, status_code=code)

    metrics = Metrics()
    app = RequestMetrics(Starlette(routes=[Route("/items/{code}", item)]), metrics)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        for code in (200, 200, 404, 503):
            await client.get(f"/items/{code}")
        await client.get("/nowhere")

    def count(endpoint: str, status: str) -> float | None:
        return metrics.registry.get_sample_value(
            "handwerk_ml_requests_total", {"method": "GET", "endpoint": endpoint, "status": status})

    assert count("/items/{code}", "200") == 2
    assert count("/items/{code}", "404") == 1 and count("/items/{code}", "503") == 1
    assert count("unmatched", "404") == 1
    assert metrics.registry.get_sample_value(
        "handwerk_ml_request_errors_total", {"endpoint": "/items/{code}"}) == 2


def test_metrics_server_serves_the_registry_and_stops() -> None:
    metrics = Metrics()
    metrics.process_info.labels("consume", "x").set(1)
    server = MetricsServer(metrics.registry, "127.0.0.1", 0)
    server.start()
    try:
        body = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
        assert 'handwerk_ml_process_info{role="consume",version="x"} 1.0' in body
    finally:
        server.stop()
        server.stop()


def test_lag_monitor_freshness_is_exported_only_where_a_monitor_runs() -> None:
    """An API process has no lag monitor: no series (a 0 there would read as 'stale since
    1970' to an alert); a process with a monitor reports 0 until its first complete read."""
    name = "handwerk_ml_lag_monitor_last_success_timestamp_seconds"
    api = Runtime(Settings(), Roles(api=True, relay=False, consumer=False))
    assert api.metrics.registry.get_sample_value(name) is None
    assert name in {f.name for f in api.metrics.registry.collect()}  # listed, without sample
    metrics = Metrics()
    LagMonitor(Settings(kafka_bootstrap_servers="127.0.0.1:1"), metrics)
    assert metrics.registry.get_sample_value(name) == 0
    metrics.lag_monitor_last_success.set(1_800_000_000.5)
    assert metrics.registry.get_sample_value(name) == 1_800_000_000.5
