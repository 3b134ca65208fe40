"""A throwaway PKI for TLS tests, made at test time: a CA, a server certificate for 127.0.0.1
and a client certificate whose key is encrypted with a password (as a real client key is)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization

KEY_PASSWORD = "client-key-password"


@dataclass(frozen=True)
class Pki:
    ca: trustme.CA
    ca_file: Path
    server: trustme.LeafCert
    client_cert: Path
    client_key: Path  # encrypted with KEY_PASSWORD
    other_ca_file: Path  # a CA that signed nothing here: trusting it must fail the handshake

    def server_context(self, *, require_client_cert: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server.configure_cert(context)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            self.ca.configure_trust(context)
        return context


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("handwerk-client", common_name="handwerk-client")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(folder / "other-ca.pem"))
    for i, pem in enumerate(client.cert_chain_pems):
        pem.write_to_path(str(folder / "client.pem"), append=i > 0)
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), password=None)
    (folder / "client.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(KEY_PASSWORD.encode())))
    return Pki(ca, folder / "ca.pem", server, folder / "client.pem", folder / "client.key",
               folder / "other-ca.pem")
