"""docker-compose.secure.yml checked statically (no Docker engine here): the secured roles load
as valid settings with every secret read from a docker secret file, and no secret is written
into the file itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from handwerk.index.qdrant.connection import qdrant_options
from handwerk.kafka import client_options
from handwerk.settings import Settings, environment_variables
from tests.tls_certs import make_pki

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("api", "relay", "consumer-1", "consumer-2")


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text())  # type: ignore[no-any-return]


def interpolate(value: str) -> str:
    """Compose's ``${VAR:?message}``, with the operator's variable set."""
    return re.sub(r"\$\{KAFKA_SASL_SSL_BOOTSTRAP:\?[^}]*\}", "kafka-secure:9094", value)


def test_secured_roles_load_with_every_secret_from_a_file(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    override = load("docker-compose.secure.yml")
    for role in ROLES:
        service = override["services"][role]
        env = {k: interpolate(str(v)) for k, v in service["environment"].items()}
        mounted = set(service["secrets"])
        values: dict[str, Any] = {"index_backend": "qdrant", "data_dir": tmp_path}
        for key, value in env.items():
            name = key.removeprefix("HANDWERK_").lower()
            assert key in environment_variables(), (role, key)  # unknown variables are ignored
            if value.startswith("/run/secrets/"):
                secret = value.removeprefix("/run/secrets/")
                assert secret in mounted, (role, key)
                path = tmp_path / secret
                path.write_bytes(pki.ca_file.read_bytes() if secret.endswith("-ca")
                                 else b"from-a-docker-secret\n")
                value = str(path)
            values[name] = value
        s = Settings(**values)
        options = client_options(s.kafka)
        assert options["security_protocol"] == "SASL_SSL" and "ssl_context" in options
        assert options["sasl_plain_password"] == "from-a-docker-secret"
        assert qdrant_options(s.index)["api_key"] == "from-a-docker-secret"
        assert qdrant_options(s.index)["url"].startswith("https://")


def test_no_secret_is_written_into_the_compose_files() -> None:
    base, override = load("docker-compose.yml"), load("docker-compose.secure.yml")
    declared = set(base.get("secrets", {})) | set(override["secrets"])
    for service in override["services"].values():
        assert set(service.get("secrets", [])) <= declared
        for key, value in service.get("environment", {}).items():
            if re.search(r"PASSWORD|API_KEY|SECRET", key) and key.startswith("HANDWERK_"):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), key
    for secret in override["secrets"].values():
        assert secret["file"].startswith("./deploy/secrets/")  # git-ignored folder
