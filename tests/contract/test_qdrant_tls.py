"""The Qdrant server adapter over https with an API key, as settings configure it.

No Qdrant server runs here, so an HTTPS stub answers the calls the catalog makes (a real TLS
handshake, with a server certificate from a CA made at test time) and refuses requests
without the right ``api-key`` header with 401, as Qdrant does."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from handwerk.index.factory import open_catalog
from handwerk.index.protocol import IndexUnavailable
from handwerk.index.qdrant.catalog import QdrantCatalog
from handwerk.index.qdrant.connection import QdrantConnection, qdrant_options
from handwerk.settings import Settings
from tests.tls_certs import Pki, make_pki

ALIAS, KEY = "projects", "qdrant-api-key"


class HttpsQdrantStub:
    """GET / and GET /aliases like a Qdrant server behind TLS that requires ``KEY``."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.requests: list[tuple[str, str | None]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                key = self.headers.get("api-key")
                stub.requests.append((self.path, key))
                if key != KEY:
                    self._send(401, {"status": {"error": "Must provide an API key"}, "time": 0})
                elif self.path == "/":
                    self._send(200, {"title": "qdrant", "version": "1.20.0"})
                elif self.path == "/aliases":
                    self._send(200, {"result": {"aliases": [
                        {"alias_name": ALIAS, "collection_name": f"{ALIAS}_g0007"}]},
                        "status": "ok", "time": 0})
                else:
                    self._send(404, {"status": {"error": "not here"}, "time": 0})

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HttpsQdrantStub:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def stub(pki: Pki) -> Iterator[HttpsQdrantStub]:
    with HttpsQdrantStub(pki.server_context(require_client_cert=False)) as server:
        yield server


def settings(stub: HttpsQdrantStub, tmp_path: Path, **fields: Any) -> Settings:
    return Settings(index_backend="qdrant", qdrant_url=stub.url, index_alias=ALIAS,
                    data_dir=tmp_path, **fields)


async def test_catalog_reaches_an_https_qdrant_with_the_ca_and_the_key_from_a_file(
        stub: HttpsQdrantStub, pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "qdrant-key").write_text(KEY + "\n")
    s = settings(stub, tmp_path, qdrant_ca_file=pki.ca_file,
                 qdrant_api_key_file=tmp_path / "qdrant-key")
    assert await open_catalog(s).current() == "g0007"
    assert stub.requests == [("/aliases", KEY)]


async def test_a_wrong_key_is_refused_by_the_server(
        stub: HttpsQdrantStub, pki: Pki, tmp_path: Path) -> None:
    s = settings(stub, tmp_path, qdrant_ca_file=pki.ca_file, qdrant_api_key="wrong")
    with pytest.raises(IndexUnavailable):
        await open_catalog(s).current()
    assert stub.requests == [("/aliases", "wrong")]


async def test_without_the_ca_the_server_certificate_is_not_trusted(
        stub: HttpsQdrantStub, tmp_path: Path) -> None:
    s = settings(stub, tmp_path, qdrant_api_key=KEY)
    # the version check would warn from its thread that it cannot verify either; skip it here
    options = {**qdrant_options(s.index), "check_compatibility": False}
    with pytest.raises(IndexUnavailable):
        await QdrantCatalog(s.index_dir, ALIAS, connection=QdrantConnection(**options)).current()
    assert stub.requests == []  # the key never left the client
