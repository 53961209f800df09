"""The certificate authorities every outbound TLS connection trusts.

Webhook deliveries, rss::payment fetches and fiat rates (`pinned_http`),
NWC relays (`nwc/relay.py`), zap receipt relays (`zapper.py`) and lnd
without `--lnd-cert` all verify servers against the same CAs: OpenSSL's
defaults, which the operator points elsewhere with `SSL_CERT_FILE` (a PEM
bundle, e.g. the system's plus a private CA) as for any OpenSSL program
(README, "Trusting a private CA"). One context for the process: read once,
on first use, so a CA added later needs a restart, and no connection reads
the bundle again.

gRPC does not read `SSL_CERT_FILE` (it has its own roots, or
`GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`), so lnd without `--lnd-cert` is given
the certificates of this context instead (`roots_pem`): `lnplugin doctor`,
which checks lnd's certificate against the same defaults, and `serve` agree.
(doctor makes a context of its own: it offers ALPN `h2`, which must not
leak into this shared one, whose HTTP client speaks HTTP/1.1 only.)
"""

from __future__ import annotations

import ssl
import threading

_lock = threading.Lock()
_context: ssl.SSLContext | None = None


def client_context() -> ssl.SSLContext:
    """The verifying client context (hostname checked, the default CAs)."""
    global _context
    with _lock:
        if _context is None:
            _context = ssl.create_default_context()
        return _context


def roots_pem() -> bytes | None:
    """The CA certificates `client_context` trusts, as one PEM bundle; None
    when it has loaded none up front (only a hashed `SSL_CERT_DIR`, looked up
    per connection): gRPC then keeps its own roots."""
    certs = client_context().get_ca_certs(binary_form=True)
    if not certs:
        return None
    return "".join(ssl.DER_cert_to_PEM_cert(der) for der in certs).encode("ascii")


def server_name(host: str) -> str:
    """The name a certificate is checked against and SNI carries: the URL's
    host without the final dot of a fully qualified name (`example.com.` is
    `example.com`; certificates name it without the dot, and RFC 6066 puts
    none in SNI). The connection itself still goes where the host resolves."""
    return host[:-1] if host.endswith(".") and not host.endswith("..") else host
