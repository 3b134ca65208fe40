"""API keys and limits on the real service (`handwerk serve`, real HTTP, the real database),
managed with the real `handwerk keys` command while the service runs: it starts open, a key
created next to it is enforced within the cache TTL, a revoked key is refused within it, and a
key's own rate limit answers 429 with Retry-After."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from handwerk.kafka import free_port
from tests.conftest import Stack
from tests.helpers import wait_until
from tests.integration.server import Server, isolated_env

pytestmark = pytest.mark.integration

TTL_S = 0.5
PROJECT = {"name": "Treppe Buche", "description": "Wangentreppe", "project_type": "stairs",
           "region": "Bayern", "total_area_sqm": 6, "wood_type": "Buche", "complexity": 3,
           "final_price": 9000}


@pytest.fixture(scope="module")
def served(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("auth")
    env = isolated_env(stack.env, folder / "data", HANDWERK_AUTH_CACHE_TTL_S=str(TTL_S),
                       HANDWERK_METRICS_PORT=str(free_port()))
    server = Server(env, folder / "serve.log").start()
    try:
        server.wait_ready(indexing=False)
        yield server
    finally:
        assert server.stop() == 0


def keys(server: Server, *args: str) -> str:
    env = {**server.env, **{k: v for k, v in os.environ.items() if k == "PATH"}}
    done = subprocess.run([sys.executable, "-m", "handwerk", "keys", *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_keys_created_and_revoked_next_to_the_running_service(served: Server) -> None:
    with served.client() as client:
        assert client.post("/api/v1/projects/", json=PROJECT).status_code == 201  # open
        writer = keys(served, "create", "--name", "writer", "--scope", "write")
        reader = keys(served, "create", "--name", "reader", "--scope", "read")
        wait_until(lambda: client.post("/api/v1/projects/", json=PROJECT).status_code == 401,
                   timeout=TTL_S + 10, message="keys enforced")
        refused = client.post("/api/v1/projects/", json=PROJECT)
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.json()["detail"][0]["type"] == "unauthenticated"

        as_writer = {"Authorization": f"Bearer {writer}"}
        created = client.post("/api/v1/projects/", json=PROJECT, headers=as_writer)
        assert created.status_code == 201, created.text
        project = created.json()["id"]
        assert client.put(f"/api/v1/projects/{project}", json=PROJECT,
                          headers={"X-API-Key": writer}).status_code == 200
        assert client.delete(f"/api/v1/projects/{project}",
                             headers={"X-API-Key": reader}).status_code == 403
        assert client.get(f"/api/v1/projects/{project}").status_code == 200  # reads: open
        assert client.get("/metrics").status_code == 401
        # the separate metrics port (HANDWERK_METRICS_PORT, loopback) needs no key
        port = served.env["HANDWERK_METRICS_PORT"]
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert scraped.status_code == 200 and "handwerk_ml_requests_total" in scraped.text
        assert client.get("/api/v1/admin/generations", headers=as_writer).status_code == 403

        key_id = writer.split("_")[1]
        keys(served, "revoke", key_id)
        wait_until(lambda: client.post("/api/v1/projects/", json=PROJECT,
                                       headers=as_writer).status_code == 401,
                   timeout=TTL_S + 10, interval=0.05, message="revocation took effect")


def test_a_key_rate_limit_answers_429(served: Server) -> None:
    slow = keys(served, "create", "--name", "slow", "--scope", "write", "--scope", "read",
                "--rate", "0.05")
    auth = {"X-API-Key": slow}
    with served.client() as client:
        wait_until(lambda: client.post("/api/v1/projects/", json=PROJECT).status_code == 401,
                   timeout=TTL_S + 10, message="keys enforced")
        # burst: max(1, 2 * 0.05) = 1 request, then one per 20 s
        assert client.get("/api/v1/projects?limit=1", headers=auth).status_code == 200
        response = client.get("/api/v1/projects?limit=1", headers=auth)
        assert response.status_code == 429, response.text
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["detail"][0]["type"] == "rate_limited"
        assert client.get("/api/v1/projects?limit=1").status_code == 200  # others unaffected
