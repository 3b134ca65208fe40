"""Metric names are a public interface (dashboards, alerts): every exported name follows the
conventions and is listed in the README."""

from __future__ import annotations

import re
from pathlib import Path

from handwerk.metrics import Metrics

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_metric_is_documented_and_conventional() -> None:
    names = {metric.name for metric in Metrics().registry.collect()}
    assert names, "no metrics registered"
    for name in names:
        assert name.startswith("handwerk_ml_"), name
        assert re.fullmatch(r"[a-z_]+", name), name
        assert not name.endswith(("_ms", "_milliseconds")), f"{name}: use base units (seconds)"
    documented = set(re.findall(r"handwerk_ml_[a-z_]+", README))
    # prometheus-client reports counters without their `_total` suffix
    missing = {n for n in names if n not in documented and f"{n}_total" not in documented}
    assert not missing, f"metrics missing from the README: {sorted(missing)}"
