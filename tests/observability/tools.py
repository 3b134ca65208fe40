"""What the observability tests share: the deploy/ files, the Prometheus binaries (Debian's
`prometheus` package, installed by `make test` where root and apt allow) and the dashboard
builder script."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
DASHBOARD_JSON = ROOT / "deploy" / "grafana" / "dashboards" / "handwerk.json"

MISSING = ("not installed: `make install-test` installs Debian's `prometheus` package (it needs "
           "root and apt-get: `apt-get install --no-install-recommends prometheus`)")


def binary(name: str) -> str:
    """Path of ``prometheus`` or ``promtool``; skips the test, saying why, when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} {MISSING}")
    return path


def promtool(*args: str | Path, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def dashboard_script() -> ModuleType:
    """scripts/build_dashboard.py as a module (scripts/ is not a package)."""
    path = ROOT / "scripts" / "build_dashboard.py"
    spec = importlib.util.spec_from_file_location("build_dashboard", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def grafana_to_promql(expr: str, rate_interval: str) -> str:
    """A panel's query as Prometheus gets it from Grafana: the one Grafana variable used."""
    return expr.replace("$__rate_interval", rate_interval)
