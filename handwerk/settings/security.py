"""TLS and SASL for the Kafka and Qdrant clients: the load-time rules and the client options.

Settings only hold paths and secrets; what a client gets is built here, so every aiokafka
client (through ``handwerk.kafka.client_options``) and every qdrant-client (through
``handwerk.index.qdrant.adapter.qdrant_options``) connects the same way. A combination
that a client would silently ignore (SSL files on a plaintext connection, credentials without
SASL) is refused at load, with the variable names a person has to fix.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import SecretStr

if TYPE_CHECKING:
    from handwerk.settings import Settings

# Secrets that may come from a file: ``HANDWERK_<NAME>_FILE`` (docker secrets, /run/secrets/...).
SECRET_FILE_FIELDS = ("kafka_sasl_password", "kafka_ssl_key_password", "qdrant_api_key")

_SSL_PROTOCOLS = ("SSL", "SASL_SSL")
_SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")


def _env(name: str) -> str:
    return f"HANDWERK_{name.upper()}"


def read_secret_files(data: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Fill each secret from its ``<name>_file`` (one trailing newline dropped, as editors and
    ``echo`` add one); giving both the value and the file is an error."""
    for name in names:
        path = data.get(f"{name}_file")
        if path is None:
            continue
        if data.get(name) is not None:
            raise ValueError(f"set either {_env(name)} or {_env(name)}_FILE, not both")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"{_env(name)}_FILE={path}: cannot read the secret ({e.strerror})") from e
        secret = text[:-1] if text.endswith("\n") else text
        secret = secret[:-1] if secret.endswith("\r") else secret
        if not secret:
            raise ValueError(f"{_env(name)}_FILE={path} is empty")
        data = {**data, name: secret}
    return data


def check_security_settings(s: Settings) -> None:
    """Refuse combinations a client would ignore or reject later, far from the cause."""
    protocol = s.kafka_security_protocol
    if protocol != "PLAINTEXT" and s.kafka_bootstrap_servers is None:
        raise ValueError(f"{_env('kafka_security_protocol')}={protocol} needs "
                         f"{_env('kafka_bootstrap_servers')}: the local tansu broker that `serve` "
                         f"starts without it speaks PLAINTEXT only")
    sasl_set = [n for n in ("kafka_sasl_username", "kafka_sasl_password") if getattr(s, n) is not None]
    if protocol in _SASL_PROTOCOLS:
        if len(sasl_set) < 2:
            raise ValueError(f"{_env('kafka_security_protocol')}={protocol} needs "
                             f"{_env('kafka_sasl_username')} and {_env('kafka_sasl_password')} "
                             f"(or {_env('kafka_sasl_password')}_FILE)")
    elif sasl_set:
        raise ValueError(f"{', '.join(_env(n) for n in sasl_set)} set, but "
                         f"{_env('kafka_security_protocol')}={protocol} does not use SASL "
                         f"(use SASL_SSL or SASL_PLAINTEXT)")
    tls_files = [n for n in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile",
                             "kafka_ssl_key_password") if getattr(s, n) is not None]
    if tls_files and protocol not in _SSL_PROTOCOLS:
        raise ValueError(f"{', '.join(_env(n) for n in tls_files)} set, but "
                         f"{_env('kafka_security_protocol')}={protocol} does not use TLS "
                         f"(use SSL or SASL_SSL)")
    if (s.kafka_ssl_certfile is None) != (s.kafka_ssl_keyfile is None):
        raise ValueError(f"a client certificate needs its key: set both {_env('kafka_ssl_certfile')} "
                         f"and {_env('kafka_ssl_keyfile')} (the same file if it holds both)")
    if s.kafka_ssl_key_password is not None and s.kafka_ssl_keyfile is None:
        raise ValueError(f"{_env('kafka_ssl_key_password')} set without {_env('kafka_ssl_keyfile')}")
    https = s.qdrant_url is not None and s.qdrant_url.lower().startswith("https://")
    if (s.qdrant_ca_file is not None or not s.qdrant_verify_tls) and not https:
        raise ValueError(f"{_env('qdrant_ca_file')} / {_env('qdrant_verify_tls')} apply only to "
                         f"an https {_env('qdrant_url')} (got {s.qdrant_url!r})")
    if s.qdrant_ca_file is not None and not s.qdrant_verify_tls:
        raise ValueError(f"{_env('qdrant_ca_file')} is set but {_env('qdrant_verify_tls')}=false "
                         f"would ignore it")
    if s.qdrant_api_key is not None and s.qdrant_url is not None and not https:
        host = urlsplit(s.qdrant_url if "://" in s.qdrant_url else f"http://{s.qdrant_url}").hostname
        if not is_loopback(host or ""):
            raise ValueError(f"{_env('qdrant_api_key')} would travel in clear to {s.qdrant_url}: "
                             f"use an https {_env('qdrant_url')} (plain http only on loopback)")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: may resolve anywhere


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def kafka_security_options(s: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for the configured protocol (producer, consumer and admin
    client take the same ones). The SSL context is built per client, so a rotated certificate
    file is picked up by the next client made."""
    from aiokafka.helpers import create_ssl_context

    options: dict[str, Any] = {"security_protocol": s.kafka_security_protocol}
    if s.kafka_security_protocol in _SSL_PROTOCOLS:
        options["ssl_context"] = create_ssl_context(
            cafile=_path(s.kafka_ssl_cafile), certfile=_path(s.kafka_ssl_certfile),
            keyfile=_path(s.kafka_ssl_keyfile), password=_secret(s.kafka_ssl_key_password))
    if s.kafka_security_protocol in _SASL_PROTOCOLS:
        options.update(sasl_mechanism=s.kafka_sasl_mechanism,
                       sasl_plain_username=s.kafka_sasl_username,
                       sasl_plain_password=_secret(s.kafka_sasl_password))
    return options


def _path(value: Path | None) -> str | None:
    return str(value) if value is not None else None


def qdrant_verify(s: Settings) -> bool | ssl.SSLContext:
    """httpx ``verify`` for qdrant-client's REST connection: system CAs, a context trusting
    ``qdrant_ca_file``, or (tests only) no verification."""
    if not s.qdrant_verify_tls:
        return False
    if s.qdrant_ca_file is not None:
        return ssl.create_default_context(cafile=str(s.qdrant_ca_file))
    return True


def qdrant_api_key(s: Settings) -> str | None:
    return _secret(s.qdrant_api_key)
