"""Load-time rules: secrets read from files, and combinations a client would silently ignore
or reject later, far from the cause. Each refusal names the variables a person has to fix."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from handwerk.settings.groups import DatabaseSettings, IndexSettings, KafkaSettings

# Secrets that may come from a file: ``HANDWERK_<NAME>_FILE`` (docker secrets, /run/secrets/...).
SECRET_FILE_FIELDS = ("kafka_sasl_password", "kafka_ssl_key_password", "qdrant_api_key",
                      "database_password")

SSL_PROTOCOLS = ("SSL", "SASL_SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")


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


def check_kafka(k: KafkaSettings) -> None:
    protocol = k.security_protocol
    if protocol != "PLAINTEXT" and k.bootstrap_servers is None:
        raise ValueError(f"{_env('kafka_security_protocol')}={protocol} needs "
                         f"{_env('kafka_bootstrap_servers')}: the local tansu broker that `serve` "
                         f"starts without it speaks PLAINTEXT only")
    sasl_set = [f"kafka_{n}" for n in ("sasl_username", "sasl_password") if getattr(k, n) is not None]
    if protocol in SASL_PROTOCOLS:
        if len(sasl_set) < 2:
            raise ValueError(f"{_env('kafka_security_protocol')}={protocol} needs "
                             f"{_env('kafka_sasl_username')} and {_env('kafka_sasl_password')} "
                             f"(or {_env('kafka_sasl_password')}_FILE)")
    elif sasl_set:
        raise ValueError(f"{', '.join(_env(n) for n in sasl_set)} set, but "
                         f"{_env('kafka_security_protocol')}={protocol} does not use SASL "
                         f"(use SASL_SSL or SASL_PLAINTEXT)")
    if protocol == "SASL_PLAINTEXT" and k.sasl_mechanism == "PLAIN":
        remote = [host for host in broker_hosts(k.bootstrap_servers or "") if not is_loopback(host)]
        if remote:
            raise ValueError(f"{_env('kafka_sasl_password')} would travel in clear to "
                             f"{', '.join(remote)} ({_env('kafka_sasl_mechanism')}=PLAIN over "
                             f"{_env('kafka_security_protocol')}=SASL_PLAINTEXT): use SASL_SSL, or "
                             f"a SCRAM mechanism (PLAIN without TLS only on loopback)")
    tls_files = [f"kafka_{n}" for n in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password")
                 if getattr(k, n) is not None]
    if tls_files and protocol not in SSL_PROTOCOLS:
        raise ValueError(f"{', '.join(_env(n) for n in tls_files)} set, but "
                         f"{_env('kafka_security_protocol')}={protocol} does not use TLS "
                         f"(use SSL or SASL_SSL)")
    if (k.ssl_certfile is None) != (k.ssl_keyfile is None):
        raise ValueError(f"a client certificate needs its key: set both {_env('kafka_ssl_certfile')} "
                         f"and {_env('kafka_ssl_keyfile')} (the same file if it holds both)")
    if k.ssl_key_password is not None and k.ssl_keyfile is None:
        raise ValueError(f"{_env('kafka_ssl_key_password')} set without {_env('kafka_ssl_keyfile')}")


def check_index(i: IndexSettings) -> None:
    https = i.qdrant_url is not None and i.qdrant_url.lower().startswith("https://")
    if (i.qdrant_ca_file is not None or not i.qdrant_verify_tls) and not https:
        raise ValueError(f"{_env('qdrant_ca_file')} / {_env('qdrant_verify_tls')} apply only to "
                         f"an https {_env('qdrant_url')} (got {i.qdrant_url!r})")
    if i.qdrant_ca_file is not None and not i.qdrant_verify_tls:
        raise ValueError(f"{_env('qdrant_ca_file')} is set but {_env('qdrant_verify_tls')}=false "
                         f"would ignore it")
    if i.qdrant_api_key is not None and i.qdrant_url is not None and not https:
        host = urlsplit(i.qdrant_url if "://" in i.qdrant_url else f"http://{i.qdrant_url}").hostname
        if not is_loopback(host or ""):
            raise ValueError(f"{_env('qdrant_api_key')} would travel in clear to {i.qdrant_url}: "
                             f"use an https {_env('qdrant_url')} (plain http only on loopback)")
    if i.backend == "qdrant" and (i.qdrant_url is None) == (i.qdrant_path is None):
        raise ValueError("index_backend=qdrant needs exactly one of qdrant_url or qdrant_path")


def check_database(d: DatabaseSettings) -> None:
    if d.password is not None and (d.url is None or d.url.startswith("sqlite")):
        raise ValueError("database_password needs a database_url of a server (PostgreSQL)")


def broker_hosts(bootstrap_servers: str) -> list[str]:
    """The hosts of a ``host:port,host:port`` list (``[v6]:port``, a bare host, a bare IPv6)."""
    hosts = []
    for server in (s.strip() for s in bootstrap_servers.split(",")):
        if server.startswith("["):
            hosts.append(server[1:].partition("]")[0])
        elif server.count(":") > 1:
            hosts.append(server)  # an IPv6 address without a port
        elif server:
            hosts.append(server.partition(":")[0])
    return hosts


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: may resolve anywhere


def without_password(url: str) -> str:
    """``url`` with its password as ``***``; a URL SQLAlchemy cannot parse is hidden whole."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparseable URL, hidden>"
