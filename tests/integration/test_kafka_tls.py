"""The service's Kafka clients over mutual TLS, against the real broker.

tansu 0.6.0 cannot serve TLS itself (its ``--cert``/``--key`` flags are mutually exclusive
and the acceptor it builds is never used), so a TLS proxy made here terminates TLS in front
of it and requires a client certificate, and the broker advertises the proxy's port: every
byte between our clients and the broker crosses a verified TLS session. The PKI (CA, server
certificate for 127.0.0.1, client certificate with a password-protected key) is made at test
time. Clients made without the options (plaintext, wrong CA, no client certificate) fail."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from handwerk.kafka import LocalBroker, ensure_topics, free_port, producer_options
from handwerk.operations.dlq import read_dead_letters, replay_dead_letters
from handwerk.settings import Settings
from tests.tls_certs import KEY_PASSWORD, Pki, make_pki


class TlsProxy:
    """Terminates TLS on ``port`` and forwards the plain bytes to ``target_port``, on its own
    event loop in a thread. ``peers``: client certificate subjects of completed handshakes."""

    def __init__(self, port: int, target_port: int, context: ssl.SSLContext) -> None:
        self.port, self._target, self._context = port, target_port, context
        self.peers: list[Any] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), name="tls-proxy",
                                        daemon=True)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=self._context)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # asyncio calls this only after the TLS handshake (client certificate included) passed
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.peers.append(writer.get_extra_info("peercert")["subject"])
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream = await asyncio.open_connection("127.0.0.1", self._target)
            pumps = {asyncio.ensure_future(_pump(reader, upstream)),
                     asyncio.ensure_future(_pump(up_reader, writer))}
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except OSError:
            pass
        finally:
            for w in (upstream, writer):
                if w is not None:
                    w.close()
                    with contextlib.suppress(Exception):
                        await w.wait_closed()
            self._tasks.discard(task)  # type: ignore[arg-type]  # None is never in the set

    def __enter__(self) -> TlsProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("TLS proxy did not start")
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while data := await source.read(65536):
        sink.write(data)
        await sink.drain()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_broker(pki: Pki) -> Iterator[TlsProxy]:
    proxy_port = free_port()
    with LocalBroker(advertised_port=proxy_port) as broker, \
            TlsProxy(proxy_port, broker.port, pki.server_context(require_client_cert=True)) as proxy:
        yield proxy


def settings(proxy: TlsProxy, tmp_path: Path, **fields: Any) -> Settings:
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    return Settings(kafka_bootstrap_servers=f"127.0.0.1:{proxy.port}", kafka_topic=topic,
                    kafka_dlq_topic=f"{topic}.dlq", kafka_partitions=1,
                    consumer_group=f"g-{topic}", data_dir=tmp_path, **fields)


def mutual_tls(pki: Pki) -> dict[str, Any]:
    return {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": pki.ca_file,
            "kafka_ssl_certfile": pki.client_cert, "kafka_ssl_keyfile": pki.client_key,
            "kafka_ssl_key_password": KEY_PASSWORD}


@pytest.mark.integration
async def test_topics_produce_dlq_read_and_replay_over_mutual_tls(
        tls_broker: TlsProxy, pki: Pki, tmp_path: Path) -> None:
    s = settings(tls_broker, tmp_path, **mutual_tls(pki))
    before = len(tls_broker.peers)
    assert sorted(await ensure_topics(s.kafka)) == sorted([s.kafka.topic, s.kafka.dlq_topic])  # admin

    producer = AIOKafkaProducer(**producer_options(s))
    await producer.start()
    try:
        for i in range(3):
            await producer.send_and_wait(s.kafka.dlq_topic, value=b"{}", key=f"p{i}".encode(),
                                         headers=[("dlq.reason", b"tls test")])
    finally:
        await producer.stop()

    letters = await read_dead_letters(s, limit=10)  # a consumer without a group
    assert [(x["key"], x["reason"]) for x in letters] == [(f"p{i}", "tls test") for i in range(3)]
    assert await replay_dead_letters(s, limit=10) == 3  # group consumer, commit, producer

    handshakes = tls_broker.peers[before:]
    assert len(handshakes) >= 5  # admin, producer, reader, replay consumer + producer
    assert {dict(rdn[0] for rdn in subject)["commonName"] for subject in handshakes} == {
        "handwerk-client"}


@pytest.mark.integration
@pytest.mark.parametrize("case", ["plaintext", "untrusted server", "no client certificate"])
async def test_clients_without_the_right_tls_options_cannot_connect(
        tls_broker: TlsProxy, pki: Pki, tmp_path: Path, case: str) -> None:
    fields: dict[str, Any] = {
        "plaintext": {},
        "untrusted server": {**mutual_tls(pki), "kafka_ssl_cafile": pki.other_ca_file},
        "no client certificate": {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": pki.ca_file},
    }[case]
    before = len(tls_broker.peers)
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(ensure_topics(settings(tls_broker, tmp_path, **fields).kafka), 30)
    assert len(tls_broker.peers) == before  # no handshake passed
