"""How every aiokafka client connects: brokers plus TLS/SASL, and the producer's delivery options.

Every client is made with ``client_options`` (or ``producer_options``, which starts from it),
so TLS and SASL reach all of them; ``tests/unit/test_kafka_client_options.py`` checks each
construction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import SecretStr

from handwerk.settings import Settings
from handwerk.settings.groups import KafkaSettings
from handwerk.settings.rules import SASL_PROTOCOLS, SSL_PROTOCOLS


def bootstrap(kafka: KafkaSettings) -> str:
    if kafka.bootstrap_servers is None:
        raise RuntimeError("HANDWERK_KAFKA_BOOTSTRAP_SERVERS is not set (only `serve` starts a "
                           "local broker)")
    return kafka.bootstrap_servers


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Where and how any aiokafka client connects: brokers plus TLS/SASL."""
    return {"bootstrap_servers": bootstrap(kafka), **kafka_security_options(kafka)}


def producer_options(settings: Settings) -> dict[str, Any]:
    """Client options plus delivery: acks from all replicas, idempotence where the broker has
    it, the relay's linger (the whole settings: delivery spans the kafka and relay groups)."""
    return {
        **client_options(settings.kafka), "acks": "all",
        "enable_idempotence": settings.kafka.enable_idempotence,
        "linger_ms": settings.relay.linger_ms, "request_timeout_ms": 15_000, "retry_backoff_ms": 200,
    }


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def kafka_security_options(kafka: KafkaSettings) -> dict[str, Any]:
    """aiokafka keyword arguments for the configured protocol (producer, consumer and admin
    client take the same ones). The SSL context is built per client, so a rotated certificate
    file is picked up by the next client made."""
    from aiokafka.helpers import create_ssl_context

    options: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    if kafka.security_protocol in SSL_PROTOCOLS:
        options["ssl_context"] = create_ssl_context(
            cafile=_path(kafka.ssl_cafile), certfile=_path(kafka.ssl_certfile),
            keyfile=_path(kafka.ssl_keyfile), password=_secret(kafka.ssl_key_password))
    if kafka.security_protocol in SASL_PROTOCOLS:
        options.update(sasl_mechanism=kafka.sasl_mechanism,
                       sasl_plain_username=kafka.sasl_username,
                       sasl_plain_password=_secret(kafka.sasl_password))
    return options


def _path(value: Path | None) -> str | None:
    return str(value) if value is not None else None
