"""A real Prometheus scrapes a running pipeline: `handwerk serve --no-relay` (API and consumer on
the embedded index) and a separate `handwerk relay` that serves /metrics on its own port. Both
run the lag monitor, so when the consumer is frozen (SIGSTOP) the relay still reports the
group's lag: Prometheus sees it rise, the lag alert goes pending, and after SIGCONT the lag
falls back to 0. Every PromQL query of the dashboard must return data from that server, and the
alert rules are the repository's deploy/prometheus/alerts.yml, unchanged ("for: 5m" rules are
checked in their pending state, which begins as soon as the expression holds)."""

from __future__ import annotations

import asyncio
import functools
import json
import random
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from handwerk.contract.events import UPSERTED, build_event, encode_event
from handwerk.kafka import free_port
from handwerk.metrics import Metrics
from handwerk.settings import environment_variables
from tests.conftest import Stack
from tests.helpers import wait_until
from tests.integration.server import HandwerkProcess, Server, isolated_env
from tests.observability.prometheus import PrometheusServer, finite
from tests.observability.tools import DASHBOARD_JSON, binary, dashboard_script, grafana_to_promql
from tooling.demo import demo_project

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

# Grafana's $__rate_interval for a 1 s scrape interval is at least 4 s.
RATE_INTERVAL = "5s"
STOPPED_EVENTS = 30


def require_lag_monitor() -> None:
    """The lag monitor and the relay's /metrics are issue #8's other half; say so if absent."""
    metrics, fields = Metrics(), environment_variables()
    missing = [name for name in ("consumer_group_lag", "oldest_unapplied_event_age",
                                 "lag_monitor_last_success", "requests", "index_write_seconds")
               if not hasattr(metrics, name)]
    missing += [f"setting {name}" for name in ("metrics_port", "metrics_host", "lag_interval_s")
                if f"HANDWERK_{name.upper()}" not in fields]
    if missing:
        pytest.skip(f"the consumer-group lag monitor is not in this tree yet (missing: "
                    f"{', '.join(missing)}); this test needs it")


@dataclass
class Live:
    server: Server
    relay: HandwerkProcess
    relay_metrics: str
    prometheus: PrometheusServer
    env: dict[str, str]
    started: float

    @property
    def group(self) -> str:
        return self.env["HANDWERK_CONSUMER_GROUP"]

    @property
    def topic(self) -> str:
        return self.env["HANDWERK_KAFKA_TOPIC"]

    def lag(self) -> float | None:
        """Total lag of our group as Prometheus has it (each partition once, whoever reports)."""
        return self.prometheus.value(
            f'sum(max by (group, topic, partition) '
            f'(handwerk_ml_consumer_group_lag{{group="{self.group}"}}))')

    def diagnostics(self) -> str:
        return (f"--- serve log\n{self.server.log_tail(2500)}\n--- relay log\n"
                f"{self.relay.log_tail(2500)}\n--- prometheus log\n{self.prometheus.log_tail(1500)}")


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def produce(live: Live, records: list[tuple[bytes, bytes]]) -> None:
    """An upstream system writes straight to the topic (aiokafka, not our relay)."""
    asyncio.run(_produce(live.env["HANDWERK_KAFKA_BOOTSTRAP_SERVERS"], live.topic, records))


def upstream_upserts(count: int, seed: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        pid = str(uuid.uuid4())
        event = build_event(event_type=UPSERTED, project_id=pid, version=1,
                            data={"id": pid, **demo_project(rng)}, source="urn:upstream:erp")
        records.append((pid.encode(), encode_event(event)))
    return records


def _serves_metrics(url: str, process: HandwerkProcess) -> bool:
    if process.process is not None and process.process.poll() is not None:
        raise AssertionError(f"{process.args[0]} exited early:\n{process.log_tail()}")
    try:
        response = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and "handwerk_ml_consumer_group_lag" in response.text


@pytest.fixture(scope="module")
def live(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    require_lag_monitor()
    binary("prometheus")
    folder = tmp_path_factory.mktemp("prometheus-live")
    env = isolated_env(stack.env, folder / "data", HANDWERK_LAG_INTERVAL_S="1")
    server = Server(env, folder / "serve.log", "--no-relay")
    relay_port = free_port()
    relay = HandwerkProcess(["relay"], {**env, "HANDWERK_METRICS_HOST": "127.0.0.1",
                                        "HANDWERK_METRICS_PORT": str(relay_port)}, folder / "relay.log")
    prometheus = PrometheusServer(folder / "prometheus", {
        "api": [f"127.0.0.1:{server.port}"], "relay": [f"127.0.0.1:{relay_port}"]})
    started = time.time()
    live = Live(server, relay, f"http://127.0.0.1:{relay_port}/metrics", prometheus, env, started)
    try:
        server.start()
        relay.start()
        server.wait_ready()
        wait_until(lambda: _serves_metrics(live.relay_metrics, relay), timeout=60, interval=0.2,
                   message=f"relay serves /metrics with the lag gauges on {live.relay_metrics}")
        prometheus.start()
        wait_until(lambda: sorted(t["labels"]["job"] for t in prometheus.targets()
                                  if t["health"] == "up") == ["api", "relay"],
                   timeout=30, interval=0.2, message="both targets scraped")
        _baseline_traffic(live)
        yield live
    except BaseException:
        print(live.diagnostics())
        raise
    finally:
        server.signal(signal.SIGCONT)
        prometheus.stop()
        relay_code, server_code = relay.stop(), server.stop()
        assert (relay_code, server_code) == (0, 0), (
            f"unclean shutdown: relay {relay_code}, serve {server_code}\n{live.diagnostics()}")


ROUTES = ("/api/v1/projects/", "/api/v1/similarity/find-similar", "/api/v1/similarity/batch-similar")


def _baseline_traffic(live: Live) -> None:
    """What every panel needs at least once: writes through outbox, relay and consumer (batch,
    embed, index write, freshness), searches of both kinds, other routes, and one poison record
    (the DLQ counter exists only after a first dead letter). Two rounds of requests with a scrape
    between them: a labelled series is born with its first request already counted, so a rate
    over it needs requests after Prometheus first saw it."""
    prom = live.prometheus

    def seen() -> dict[str, float]:
        return {route: prom.value(f'sum(handwerk_ml_request_duration_seconds_count{{endpoint="{route}"}})')
                or 0.0 for route in ROUTES}

    def counted(before: dict[str, float]) -> bool:
        now = seen()
        return all(now[route] > before[route] for route in ROUTES)

    with live.server.client() as http:
        for seed in range(2):
            before = seen()
            created = http.post("/api/v1/projects/", params={"wait_indexed": 30},
                                json=demo_project(random.Random(seed)))
            assert created.status_code == 201 and created.json()["indexed_version"] == 1, created.text
            for query in ("Küche mit Kochinsel", "Treppe aus Eiche"):
                found = http.post("/api/v1/similarity/find-similar", json={"query": query})
                assert found.status_code == 200, found.text
                batch = http.post("/api/v1/similarity/batch-similar", json={"queries": [query, "Tisch"]})
                assert batch.status_code == 200, batch.text
            wait_until(functools.partial(counted, before), timeout=30, interval=0.2,
                       message="Prometheus scraped this round of requests")
    produce(live, [(str(uuid.uuid4()).encode(), b"{not json")])
    wait_until(lambda: prom.query("handwerk_ml_events_dead_lettered_total"), timeout=60,
               message="the poison record's dead letter in Prometheus")
    wait_until(lambda: live.lag() == 0, timeout=60, message="the group's lag (0) in Prometheus")


def _active(alerts: list[dict[str, Any]], **labels: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["state"] in ("pending", "firing")
            and all(a["labels"].get(k) == v for k, v in labels.items())]


def test_lag_rises_while_the_consumer_is_stopped_and_falls_after(live: Live) -> None:
    prom, group = live.prometheus, live.group
    applied_before = prom.value('sum(handwerk_ml_events_applied_total{job="api"})') or 0.0
    live.server.signal(signal.SIGSTOP)
    try:
        produce(live, upstream_upserts(STOPPED_EVENTS, seed=11))
        # the frozen consumer reports nothing; the relay's lag monitor sees every record
        lag = wait_until(lambda: (v := live.lag()) is not None and v >= STOPPED_EVENTS and v,
                         timeout=60, interval=0.2, message=f"lag >= {STOPPED_EVENTS} in Prometheus")
        assert lag == STOPPED_EVENTS, lag
        by_relay = prom.value(f'sum(handwerk_ml_consumer_group_lag{{job="relay",group="{group}"}})')
        assert by_relay == STOPPED_EVENTS
        wait_until(lambda: _active(prom.alerts("HandwerkConsumerLagGrowing"), group=group),
                   timeout=60, interval=0.2, message="HandwerkConsumerLagGrowing pending")
        wait_until(lambda: (prom.value(f'max(handwerk_ml_oldest_unapplied_event_age_seconds'
                                       f'{{group="{group}"}})') or 0) > 0,
                   timeout=30, interval=0.2, message="oldest unapplied event age above 0")
        wait_until(lambda: _active(prom.alerts("HandwerkTargetDown"), job="api"), timeout=30,
                   interval=0.2, message="the stopped serve process's target down (pending)")
        fresh = prom.value('time() - handwerk_ml_lag_monitor_last_success_timestamp_seconds{job="relay"}')
        assert fresh is not None and fresh < 10, f"relay's lag monitor is stale ({fresh} s)"
    finally:
        live.server.signal(signal.SIGCONT)

    wait_until(lambda: live.lag() == 0, timeout=120, interval=0.5,
               message=f"lag back to 0 after SIGCONT\n{live.diagnostics()}")
    applied = prom.value('sum(handwerk_ml_events_applied_total{job="api"})') or 0.0
    assert applied >= applied_before + STOPPED_EVENTS
    wait_until(lambda: not _active(prom.alerts("HandwerkConsumerLagGrowing"), group=group),
               timeout=30, interval=0.5, message="lag alert resolved once lag is 0")
    assert prom.value(f'max(handwerk_ml_oldest_unapplied_event_age_seconds{{group="{group}"}})') == 0


def test_a_dead_letter_fires_its_alert(live: Live) -> None:
    """The counter is born at 1 with the first dead letter: the rule's second arm sees it."""
    firing = wait_until(lambda: [a for a in live.prometheus.alerts("HandwerkEventsDeadLettered")
                                 if a["state"] == "firing"],
                        timeout=30, interval=0.2, message="HandwerkEventsDeadLettered firing")
    assert all(a["labels"]["reason"] for a in firing)


def test_every_dashboard_query_returns_data(live: Live) -> None:
    """Each query, as Grafana would send it, has finite data at some point of this run (waiting a
    little for rules and rates that need a few more evaluations)."""
    board = json.loads(DASHBOARD_JSON.read_text())
    queries = [(title, grafana_to_promql(expr, RATE_INTERVAL))
               for title, expr in dashboard_script().expressions(board)]
    assert len(queries) >= 15

    def without_data() -> list[str]:
        return [f"{title}: {promql}" for title, promql in queries
                if not finite(live.prometheus.query_range(promql, live.started, time.time()))]

    try:
        wait_until(lambda: not without_data(), timeout=30, interval=1, message="data for every query")
    except AssertionError:
        raise AssertionError("queries with no data:\n" + "\n".join(without_data())) from None
