"""A test certificate authority and TLS servers on loopback, for the tests of
lnplugin's outbound TLS clients (tests/test_tls_e2e.py).

`Pki` makes, with the `cryptography` package, a CA and three server
certificates: one for `localhost` (a DNS name only, no IP address, so a
client that checked the address it connected to instead of the name would
fail), one the CA issued for another name, and one for `localhost` that no
CA issued (self-signed). `Pki.server_context(kind)` serves one of them and
records the name each client sent in its SNI (`names`).

`https(handler, context)` is a ThreadingHTTPServer behind TLS; the
webhook receiver, the rss::payment pages and the rate provider of the
tests take a context through it.
"""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

GOOD, WRONG_NAME, SELF_SIGNED = "localhost", "wrong-name", "self-signed"
OTHER_NAME = "not-localhost.example"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    san: str | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=90))  # past doctor's 30-day warning
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        ).add_extension(x509.SubjectAlternativeName([x509.DNSName(san or subject)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class Pki:
    """The CA file (`ca`) an operator would point lnplugin at, and a chain
    and key per server certificate, written under `directory`."""

    directory: Path
    ca: Path = field(init=False)
    names: list[str | None] = field(default_factory=list)  # SNI names, as servers saw them

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _cert("lnplugin test CA", ca_key, "lnplugin test CA", ca_key, ca=True)
        self.ca = self.directory / "ca.pem"
        self.ca.write_bytes(_pem(ca_cert))
        for kind, san, self_signed in (
            (GOOD, "localhost", False),
            (WRONG_NAME, OTHER_NAME, False),
            (SELF_SIGNED, "localhost", True),
        ):
            key = ec.generate_private_key(ec.SECP256R1())
            if self_signed:
                cert = _cert(san, key, san, key, ca=False)
            else:
                cert = _cert(san, key, "lnplugin test CA", ca_key, ca=False)
            (self.directory / f"{kind}.pem").write_bytes(_pem(cert))
            (self.directory / f"{kind}.key").write_bytes(_key_pem(key))

    def server_context(self, kind: str) -> ssl.SSLContext:
        """A server-side context presenting certificate `kind`; records SNI in `names`."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.directory / f"{kind}.pem", self.directory / f"{kind}.key")

        def heard(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            self.names.append(name)

        context.sni_callback = heard
        return context


class HTTPSServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that speaks TLS. The handshake runs on the
    request's own thread (not in `accept`), so a client that gives up on
    the certificate holds up no other."""

    daemon_threads = True

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext | None
    ) -> None:
        self.context = context
        self.handshake_errors: list[str] = []
        super().__init__(("127.0.0.1", 0), handler)

    def finish_request(self, request, client_address) -> None:
        if self.context is not None:
            try:
                request = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                self.handshake_errors.append(str(exc))
                return
        super().finish_request(request, client_address)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> HTTPSServer:
        threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class Pages:
    """GET `path` answers what `answers[path]` holds: (status, headers, body);
    an unknown path is a 404. Every request path is recorded in `asked`. Over
    TLS with `context`, else plain HTTP; `url` names localhost either way."""

    def __init__(self, context: ssl.SSLContext | None) -> None:
        self.answers: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.asked: list[str] = []
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                pages.asked.append(self.path)
                status, headers, body = pages.answers.get(self.path.split("?")[0], (404, {}, b""))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPSServer(Handler, context).start()
        self.scheme = "https" if context is not None else "http"

    def url(self, path: str) -> str:
        return f"{self.scheme}://localhost:{self.server.port}{path}"

    def close(self) -> None:
        self.server.close()
