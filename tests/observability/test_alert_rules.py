"""deploy/prometheus/alerts.yml checked and unit-tested by promtool (alerts.test.yml), and the
scrape config it belongs to checked too."""

from __future__ import annotations

from typing import Any

import yaml

from tests.observability.tools import ALERT_TESTS, ALERTS, PROMETHEUS_DIR, promtool

# The alerts issue #8 asks for, by what they watch.
EXPECTED = {
    "HandwerkSearchLatencyHigh",        # search p95 > 100 ms for 5 minutes
    "HandwerkHighErrorRate",            # 5xx > 1% of requests
    "HandwerkConsumerLagGrowing",       # lag growing for 5 minutes
    "HandwerkOldestUnappliedEventOld",  # oldest unapplied event > 60 s
    "HandwerkEventsDeadLettered",       # any dead-lettered event
    "HandwerkOutboxRowOld",             # oldest outbox row > 60 s
    "HandwerkTargetDown",               # api, relay or a consumer not scraped
    "HandwerkLagMonitorStale",          # the lag monitor stopped reading the broker
    "HandwerkDataDirLowOnSpace",        # the data folder's filesystem nearly full (issue 18 §7)
}


def rules() -> list[dict[str, Any]]:
    spec = yaml.safe_load(ALERTS.read_text())
    return [rule for group in spec["groups"] for rule in group["rules"]]


def test_rules_are_valid() -> None:
    checked = promtool("check", "rules", ALERTS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_every_rule_passes_its_unit_tests() -> None:
    tested = promtool("test", "rules", ALERT_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_scrape_config_is_valid_and_loads_the_rules() -> None:
    checked = promtool("check", "config", PROMETHEUS_DIR / "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout


def test_the_asked_alerts_exist_with_severity_and_text() -> None:
    found = {rule["alert"]: rule for rule in rules()}
    assert set(found) == EXPECTED
    for name, rule in found.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
    assert found["HandwerkSearchLatencyHigh"]["for"] == "5m"
    assert found["HandwerkConsumerLagGrowing"]["for"] == "5m"


def test_every_alert_is_tested_firing_and_quiet() -> None:
    """Each alert has a case where it fires and one where it must not (a near miss or the time
    before ``for`` elapsed): a rule that always or never fires fails its tests."""
    cases = [case for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
             for case in test["alert_rule_test"]]
    for name in EXPECTED:
        own = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in own), f"{name} never expected to fire"
        assert any(not case["exp_alerts"] for case in own), f"{name} never expected quiet"
