"""docker-compose.yml checked statically (no Docker engine here): real commands, real
settings, pinned images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from typer.main import get_command

from handwerk.cli.main import app
from handwerk.settings import Settings, environment_variables

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def is_handwerk(service: dict[str, Any]) -> bool:
    return str(service.get("image", "")).startswith("handwerk:")


def test_every_handwerk_service_runs_a_real_command() -> None:
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    services = compose()["services"]
    roles = {name: svc["command"] for name, svc in services.items() if is_handwerk(svc)}
    assert {"api", "relay", "consumer-1", "consumer-2"} <= set(roles)
    for name, command in roles.items():
        assert command[0] == "handwerk" and command[1] in commands, (name, command)
    consumers = [n for n, c in roles.items() if c[1] == "consume"]
    assert len(consumers) >= 2


def with_secrets_from(env: dict[str, str], folder: Path) -> dict[str, str]:
    """The environment with each /run/secrets/NAME file replaced by a file in ``folder`` (the
    container's path does not exist here), so the secrets are read as the container would."""
    replaced = dict(env)
    for key, value in env.items():
        if key.endswith("_FILE") and value.startswith("/run/secrets/"):
            secret = folder / value.rsplit("/", 1)[-1]
            secret.write_text("compose-test-password\n")
            replaced[key] = str(secret)
    return replaced


def as_settings(env: dict[str, str]) -> Settings:
    return Settings(**{k.removeprefix("HANDWERK_").lower(): v for k, v in env.items()
                       if k.startswith("HANDWERK_")})


def test_every_handwerk_variable_is_a_setting(tmp_path: Path) -> None:
    fields = set(environment_variables())
    for name, svc in compose()["services"].items():
        for variable in svc.get("environment", {}):
            if variable.startswith("HANDWERK_"):
                assert variable in fields, (name, variable)
    # and the production environment actually validates
    env = with_secrets_from(compose()["services"]["api"]["environment"], tmp_path)
    settings = as_settings(env)
    assert settings.index.backend == "qdrant" and settings.kafka.enable_idempotence


def test_the_database_is_the_postgres_service_with_its_password_from_a_secret(
        tmp_path: Path) -> None:
    spec = compose()
    postgres = spec["services"]["postgres"]
    assert "POSTGRES_PASSWORD" not in postgres["environment"]  # never a literal
    secret_path = postgres["environment"]["POSTGRES_PASSWORD_FILE"]
    assert secret_path == "/run/secrets/postgres-password"
    assert "postgres-password" in postgres["secrets"] and "postgres-data" in spec["volumes"]
    assert spec["secrets"]["postgres-password"]["file"].startswith("./deploy/secrets/")
    user, database = postgres["environment"]["POSTGRES_USER"], postgres["environment"]["POSTGRES_DB"]
    for name, svc in spec["services"].items():
        if not is_handwerk(svc):
            continue
        env = svc["environment"]
        assert env["HANDWERK_DATABASE_PASSWORD_FILE"] == secret_path, name
        assert "postgres-password" in svc["secrets"], name
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy", name
        url = as_settings(with_secrets_from(env, tmp_path)).resolved_database_url
        assert url == (f"postgresql+asyncpg://{user}:compose-test-password@postgres:5432/"
                       f"{database}"), name
        assert ":" not in env["HANDWERK_DATABASE_URL"].split("@")[0].removeprefix(
            "postgresql+asyncpg://"), f"{name}: a password in the URL"


def test_images_are_pinned_and_data_is_on_named_volumes() -> None:
    spec = compose()
    for name, svc in spec["services"].items():
        image = svc.get("image")
        assert image and ":" in image and not image.endswith(":latest"), name
    assert {"postgres-data", "kafka-data", "qdrant-data", "handwerk-data"} <= set(spec["volumes"])
    assert "KRaft" in (ROOT / "docker-compose.yml").read_text() or \
        spec["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


# Observability (issue #8): Prometheus scrapes every role, Grafana is provisioned from deploy/.

def prometheus_config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())  # type: ignore[no-any-return]


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of the bind mounts (``./...``) of a compose service."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            found[target] = ROOT / source
    return found


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """Where a path inside the container comes from on the host (through its bind mounts)."""
    for target, source in sorted(mounts(service).items(), key=lambda m: -len(m[0])):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / container_path[len(target):].lstrip("/")
    raise AssertionError(f"{container_path} is not mounted from the repository")


def metrics_port(name: str, service: dict[str, Any]) -> int:
    """The port a handwerk role serves /metrics on without an API key: reachable from other
    containers, not published on the host."""
    env = service["environment"]
    assert env.get("HANDWERK_METRICS_HOST") == "0.0.0.0", f"{name} binds /metrics to loopback only"
    assert "HANDWERK_METRICS_PORT" in env, f"{name} serves no /metrics without a key"
    port = str(int(env["HANDWERK_METRICS_PORT"]))
    assert port in {str(p) for p in service.get("expose", [])}, f"{name} does not expose {port}"
    published = {str(p).rsplit(":", 1)[-1] for p in service.get("ports", [])}
    assert port not in published, f"{name} publishes its keyless /metrics on the host"
    return int(port)


SCRAPE_CREDENTIALS = ("authorization", "basic_auth", "oauth2", "bearer_token", "bearer_token_file")


def test_prometheus_scrapes_every_role_where_it_serves_metrics(tmp_path: Path) -> None:
    """Every target is a role's keyless metrics port, or the job carries credentials: a
    scrape of the HTTP port's /metrics gets 401 once an API key exists."""
    services = compose()["services"]
    roles = {name for name, svc in services.items() if is_handwerk(svc)}
    scraped: dict[str, str] = {}
    for job in prometheus_config()["scrape_configs"]:
        with_key = any(field in job for field in SCRAPE_CREDENTIALS)
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                if host == "localhost":
                    continue
                assert host in services, f"job {job['job_name']} scrapes {host}, not a service"
                if not with_key:
                    assert int(port) == metrics_port(host, services[host]), (job["job_name"], target)
                scraped[host] = job["job_name"]
    assert roles <= set(scraped), f"roles nobody scrapes: {roles - set(scraped)}"
    # the alert rules name these jobs (HandwerkTargetDown)
    assert {scraped["api"], scraped["relay"], scraped["consumer-1"], scraped["consumer-2"]} == {
        "api", "relay", "consumer"}
    # and the metrics settings are valid settings
    for name in ("api", "relay"):
        settings = as_settings(with_secrets_from(services[name]["environment"], tmp_path))
        seen = settings.observability
        assert seen.metrics_port == 9100 and seen.metrics_host == "0.0.0.0", name


def test_prometheus_config_and_rules_are_mounted() -> None:
    prom = compose()["services"]["prometheus"]
    flags = {name: value for name, _, value in (a.removeprefix("--").partition("=") for a in prom["command"])}
    config_file = host_path(prom, flags["config.file"])
    assert config_file.is_file() and config_file == ROOT / "deploy/prometheus/prometheus.yml"
    for rule_file in prometheus_config()["rule_files"]:
        assert (config_file.parent / rule_file).is_file(), rule_file
    assert any(v.split(":")[1] == flags["storage.tsdb.path"] for v in prom["volumes"]
               if not v.startswith("./")), "Prometheus data is on a named volume"
    assert "prometheus-data" in compose()["volumes"]


def test_grafana_datasource_and_dashboard_are_provisioned() -> None:
    grafana = compose()["services"]["grafana"]
    provisioning = host_path(grafana, "/etc/grafana/provisioning/datasources")
    sources = [s for f in sorted(provisioning.glob("*.yml"))
               for s in yaml.safe_load(f.read_text())["datasources"]]
    prometheus = next(s for s in sources if s["type"] == "prometheus")
    assert prometheus["url"] == "http://prometheus:9090" and "prometheus" in compose()["services"]

    providers = [p for f in sorted(host_path(grafana, "/etc/grafana/provisioning/dashboards").glob("*.yml"))
                 for p in yaml.safe_load(f.read_text())["providers"]]
    folder = host_path(grafana, providers[0]["options"]["path"])
    assert folder == ROOT / "deploy/grafana/dashboards"
    board = json.loads((folder / "handwerk.json").read_text())
    uids = {p["datasource"]["uid"] for p in board["panels"] if p["type"] != "row"}
    assert uids == {prometheus["uid"]}, "every panel uses the provisioned datasource"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, home).is_file()
