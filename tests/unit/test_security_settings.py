"""Secured Kafka and Qdrant settings: what each protocol gives the clients, secrets read from
files, and the combinations refused at load (with the variable to fix in the message)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from handwerk.index.qdrant.connection import qdrant_options
from handwerk.kafka import client_options, producer_options
from handwerk.settings import Settings
from tests.tls_certs import KEY_PASSWORD, Pki, make_pki

BROKERS = "broker-1:9093"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def settings(**fields: Any) -> Settings:
    return Settings(kafka_bootstrap_servers=BROKERS, **fields)


def tls(pki: Pki, **fields: Any) -> dict[str, Any]:
    return {"kafka_ssl_cafile": pki.ca_file, "kafka_ssl_certfile": pki.client_cert,
            "kafka_ssl_keyfile": pki.client_key, "kafka_ssl_key_password": KEY_PASSWORD, **fields}


SASL = {"kafka_sasl_username": "indexer", "kafka_sasl_password": "s3cret"}


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    assert client_options(settings().kafka) == {"bootstrap_servers": BROKERS,
                                          "security_protocol": "PLAINTEXT"}


def test_ssl_gives_a_verifying_context_with_the_ca_and_the_client_certificate(pki: Pki) -> None:
    options = client_options(settings(kafka_security_protocol="SSL", **tls(pki)).kafka)
    context = options["ssl_context"]
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [
        c["subject"] for c in pki.server_context(require_client_cert=True).get_ca_certs()]


def test_ssl_with_a_wrong_key_password_fails_when_the_client_is_made(pki: Pki) -> None:
    with pytest.raises(ssl.SSLError):
        client_options(settings(kafka_security_protocol="SSL", **tls(pki, kafka_ssl_key_password="no")).kafka)


def test_ssl_without_a_ca_trusts_the_system_store() -> None:
    context = client_options(settings(kafka_security_protocol="SSL").kafka)["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_passes_mechanism_and_credentials(mechanism: str) -> None:
    servers = "127.0.0.1:9093" if mechanism == "PLAIN" else BROKERS  # PLAIN in clear: loopback only
    options = client_options(Settings(kafka_bootstrap_servers=servers,
                                      kafka_security_protocol="SASL_PLAINTEXT",
                                      kafka_sasl_mechanism=mechanism, **SASL).kafka)
    assert options == {"bootstrap_servers": servers, "security_protocol": "SASL_PLAINTEXT",
                       "sasl_mechanism": mechanism, "sasl_plain_username": "indexer",
                       "sasl_plain_password": "s3cret"}


def test_sasl_ssl_passes_both(pki: Pki) -> None:
    options = client_options(settings(kafka_security_protocol="SASL_SSL",
                                      kafka_ssl_cafile=pki.ca_file, **SASL).kafka)
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == "s3cret"


def test_producer_options_carry_the_security_options() -> None:
    options = producer_options(settings(kafka_security_protocol="SASL_PLAINTEXT", **SASL))
    assert options["security_protocol"] == "SASL_PLAINTEXT" and options["acks"] == "all"


async def test_aiokafka_accepts_the_options_of_every_protocol(pki: Pki) -> None:
    """aiokafka checks protocol, context and mechanism when a client is made (not started)."""
    for s in (settings(), settings(kafka_security_protocol="SSL", **tls(pki)),
              settings(kafka_security_protocol="SASL_PLAINTEXT", **SASL),
              settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="PLAIN", **SASL,
                       **tls(pki))):
        producer = AIOKafkaProducer(**producer_options(s))
        consumer = AIOKafkaConsumer(**client_options(s.kafka), group_id=None)
        admin = AIOKafkaAdminClient(**client_options(s.kafka))
        await producer.stop()
        await consumer.stop()
        await admin.close()


def test_secrets_never_show_in_repr() -> None:
    s = settings(kafka_security_protocol="SASL_PLAINTEXT", qdrant_api_key="qk", **SASL)
    assert "s3cret" not in repr(s) and "qk" not in repr(s)


def test_secrets_come_from_files_named_in_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "password").write_text("from-a-docker-secret\n")
    (tmp_path / "qdrant").write_text("qdrant-key")
    for name, value in {"KAFKA_BOOTSTRAP_SERVERS": BROKERS,
                        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                        "KAFKA_SASL_USERNAME": "indexer",
                        "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "password"),
                        "QDRANT_API_KEY_FILE": str(tmp_path / "qdrant")}.items():
        monkeypatch.setenv(f"HANDWERK_{name}", value)
    s = Settings()
    assert client_options(s.kafka)["sasl_plain_password"] == "from-a-docker-secret"
    assert client_options(s.kafka)["sasl_mechanism"] == "SCRAM-SHA-256"
    assert qdrant_options(s.index)["api_key"] == "qdrant-key"


@pytest.mark.parametrize(("fields", "message"), [
    ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_password": "p"},
     "SASL_SSL needs HANDWERK_KAFKA_SASL_USERNAME"),
    ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u"},
     "HANDWERK_KAFKA_SASL_PASSWORD"),
    ({"kafka_sasl_username": "u", "kafka_sasl_password": "p"},
     "PLAINTEXT does not use SASL"),
    ({"kafka_security_protocol": "SSL", "kafka_sasl_username": "u"}, "SSL does not use SASL"),
    ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "GSSAPI", **SASL},
     "kafka_sasl_mechanism"),
    ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
])
def test_bad_sasl_combinations_are_refused_at_load(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(**fields)


@pytest.mark.parametrize("url", ["http://qdrant:6333", "http://10.0.0.7:6333", "qdrant:6333",
                                 "HTTP://qdrant.example.com"])
def test_a_qdrant_key_over_plain_http_is_refused_beyond_loopback(url: str) -> None:
    with pytest.raises(ValidationError, match="HANDWERK_QDRANT_API_KEY would travel in clear"):
        settings(index_backend="qdrant", qdrant_url=url, qdrant_api_key="qk")


@pytest.mark.parametrize("url", ["http://localhost:6333", "http://127.0.0.1:6333",
                                 "http://[::1]:6333", "https://qdrant:6333"])
def test_a_qdrant_key_is_allowed_over_https_or_on_loopback(url: str) -> None:
    s = settings(index_backend="qdrant", qdrant_url=url, qdrant_api_key="qk")
    assert qdrant_options(s.index)["api_key"] == "qk"
    settings(index_backend="qdrant", qdrant_url="http://qdrant:6333")  # no key: nothing to leak


def test_a_secured_protocol_without_brokers_is_refused_at_load() -> None:
    with pytest.raises(ValidationError, match="SSL needs HANDWERK_KAFKA_BOOTSTRAP_SERVERS: the "
                                              "local tansu broker"):
        Settings(kafka_security_protocol="SSL")


def test_bad_tls_combinations_are_refused_at_load(pki: Pki, tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kafka_ssl_cafile": pki.ca_file},
         "HANDWERK_KAFKA_SSL_CAFILE set, but .*PLAINTEXT does not use TLS"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_ssl_cafile": pki.ca_file, **SASL},
         "SASL_PLAINTEXT does not use TLS"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": pki.client_cert},
         "needs its key: set both HANDWERK_KAFKA_SSL_CERTFILE and HANDWERK_KAFKA_SSL_KEYFILE"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": pki.client_key},
         "needs its key"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_key_password": "x"},
         "HANDWERK_KAFKA_SSL_KEY_PASSWORD set without HANDWERK_KAFKA_SSL_KEYFILE"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": tmp_path / "missing.pem"},
         "kafka_ssl_cafile"),
    ]
    for fields, message in cases:
        with pytest.raises(ValidationError, match=message):
            settings(**fields)


def test_a_secret_and_its_file_together_or_an_unreadable_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("p")
    (tmp_path / "empty").write_text("\n")
    sasl = {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u"}
    with pytest.raises(ValidationError, match="either HANDWERK_KAFKA_SASL_PASSWORD or "
                                              "HANDWERK_KAFKA_SASL_PASSWORD_FILE"):
        settings(**sasl, kafka_sasl_password="p", kafka_sasl_password_file=tmp_path / "pw")
    with pytest.raises(ValidationError, match="HANDWERK_KAFKA_SASL_PASSWORD_FILE=.*cannot read"):
        settings(**sasl, kafka_sasl_password_file=tmp_path / "nope")
    with pytest.raises(ValidationError, match="HANDWERK_KAFKA_SASL_PASSWORD_FILE=.* is empty"):
        settings(**sasl, kafka_sasl_password_file=tmp_path / "empty")


def test_qdrant_options_default_to_system_verification() -> None:
    options = qdrant_options(settings(index_backend="qdrant", qdrant_url="https://q.example:6333").index)
    assert options == {"url": "https://q.example:6333", "path": None, "api_key": None,
                       "verify": True, "check_compatibility": True}


def test_qdrant_ca_file_gives_a_context_that_trusts_it(pki: Pki) -> None:
    options = qdrant_options(settings(index_backend="qdrant", qdrant_url="https://127.0.0.1:6333",
                                      qdrant_ca_file=pki.ca_file, qdrant_api_key="k").index)
    assert isinstance(options["verify"], ssl.SSLContext) and options["api_key"] == "k"
    assert options["verify"].verify_mode == ssl.CERT_REQUIRED
    assert len(options["verify"].get_ca_certs()) == 1
    assert options["check_compatibility"] is False  # qdrant-client's check ignores verify


def test_bad_qdrant_tls_combinations_are_refused_at_load(pki: Pki) -> None:
    with pytest.raises(ValidationError, match="apply only to an https HANDWERK_QDRANT_URL"):
        settings(index_backend="qdrant", qdrant_url="http://q:6333", qdrant_ca_file=pki.ca_file)
    with pytest.raises(ValidationError, match="apply only to an https"):
        settings(qdrant_verify_tls=False)
    with pytest.raises(ValidationError, match="QDRANT_VERIFY_TLS=false would ignore it"):
        settings(index_backend="qdrant", qdrant_url="https://q:6333", qdrant_ca_file=pki.ca_file,
                 qdrant_verify_tls=False)
    assert qdrant_options(settings(index_backend="qdrant", qdrant_url="https://q:6333",
                                   qdrant_verify_tls=False).index)["verify"] is False


SECRET = "pw-7f3a"


@pytest.mark.parametrize("given", [
    {"database_url": "sqlite:///x.db", "database_password": SECRET},  # a rule of the whole object
    {"kafka_partitions": "many", "kafka_sasl_password": SECRET},  # a bad value next to a secret
])
def test_settings_errors_never_echo_a_secret(given: dict[str, Any]) -> None:
    """Issue 19 #11: pydantic repeats the input in its errors (``input_value=...``)."""
    with pytest.raises(ValidationError) as refused:
        Settings(**given)
    assert SECRET not in str(refused.value) and "input_value" not in str(refused.value)


def test_settings_errors_never_echo_a_secret_from_the_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "password").write_text("from-a-file\n")
    monkeypatch.setenv("HANDWERK_KAFKA_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("HANDWERK_KAFKA_SASL_PASSWORD_FILE", str(tmp_path / "password"))
    with pytest.raises(ValidationError, match="not both") as refused:
        Settings()
    assert SECRET not in str(refused.value) and "input_value" not in str(refused.value)


@pytest.mark.parametrize("servers", ["broker-1:9093", "10.0.0.5:9092",
                                     "127.0.0.1:9092,kafka.example.com:9092"])
def test_sasl_plain_without_tls_is_refused_beyond_loopback(servers: str) -> None:
    with pytest.raises(ValidationError, match="HANDWERK_KAFKA_SASL_PASSWORD would travel in clear"):
        Settings(kafka_bootstrap_servers=servers, kafka_security_protocol="SASL_PLAINTEXT",
                 kafka_sasl_mechanism="PLAIN", **SASL)


@pytest.mark.parametrize(("servers", "protocol", "mechanism"), [
    ("localhost:9092", "SASL_PLAINTEXT", "PLAIN"),
    ("127.0.0.1:9092,[::1]:9093", "SASL_PLAINTEXT", "PLAIN"),
    ("broker-1:9093", "SASL_PLAINTEXT", "SCRAM-SHA-512"),  # SCRAM never sends the password
    ("broker-1:9093", "SASL_SSL", "PLAIN"),
])
def test_sasl_plain_is_allowed_over_tls_or_on_loopback(servers: str, protocol: str,
                                                       mechanism: str) -> None:
    s = Settings(kafka_bootstrap_servers=servers, kafka_security_protocol=protocol,
                 kafka_sasl_mechanism=mechanism, **SASL)
    assert s.kafka.sasl_mechanism == mechanism
