"""Signed requests over real HTTP: a token created with `--require-signature`.

The client side is written here from docs/signed-requests.md, not imported
from lnplugin, so a change to what the server signs breaks these tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import Server, cli


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("signed") / "data") as srv:
        yield srv


@pytest.fixture(scope="module")
def signer(server: Server) -> tuple[str, str]:
    lines = cli(
        server.data_dir, "token", "create", "--scope", "admin", "--require-signature"
    ).splitlines()
    secret, token = lines[-2], lines[-1]
    assert secret.startswith("lnps_") and token.startswith("lnp_")
    return secret, token


def signed_headers(
    secret: str, method: str, path: str, body: bytes = b"", ts: int | None = None
) -> dict[str, str]:
    timestamp = str(int(time.time()) if ts is None else ts)
    nonce = secrets.token_hex(16)
    text = "\n".join([method, path, timestamp, nonce, hashlib.sha256(body).hexdigest()])
    signature = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    return {
        "X-Lnplugin-Timestamp": timestamp,
        "X-Lnplugin-Nonce": nonce,
        "X-Lnplugin-Signature": signature,
    }


def send(
    server: Server, token: str, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> Any:
    headers = {**headers, "Content-Type": "application/json"} if body else headers
    return server.request(method, path, token=token, headers=headers, data=body)


def test_signed_requests_pass_with_and_without_a_body_or_query(
    server: Server, signer: tuple[str, str]
) -> None:
    secret, token = signer
    reply = send(server, token, "GET", "/invoices", signed_headers(secret, "GET", "/invoices"))
    assert reply.status_code == 200
    path = "/invoices?items=2&page=1"
    assert send(server, token, "GET", path, signed_headers(secret, "GET", path)).status_code == 200
    body = json.dumps({"amount": 21, "description": "signed"}).encode()
    reply = send(
        server, token, "POST", "/invoices", signed_headers(secret, "POST", "/invoices", body), body
    )
    assert reply.status_code == 201, reply.text


def test_an_unsigned_request_names_the_missing_headers(
    server: Server, signer: tuple[str, str]
) -> None:
    reply = server.request("GET", "/invoices", token=signer[1])
    assert reply.status_code == 401
    assert set(reply.json()["errors"]) == {
        "X-Lnplugin-Timestamp",
        "X-Lnplugin-Nonce",
        "X-Lnplugin-Signature",
    }


def test_a_replayed_nonce_is_refused(server: Server, signer: tuple[str, str]) -> None:
    secret, token = signer
    headers = signed_headers(secret, "GET", "/invoices")
    assert send(server, token, "GET", "/invoices", headers).status_code == 200
    again = send(server, token, "GET", "/invoices", headers)
    assert again.status_code == 401
    assert "already used" in again.json()["errors"]["X-Lnplugin-Nonce"]


def test_a_stale_timestamp_is_refused(server: Server, signer: tuple[str, str]) -> None:
    secret, token = signer
    old = signed_headers(secret, "GET", "/invoices", ts=int(time.time()) - 1000)
    reply = send(server, token, "GET", "/invoices", old)
    assert reply.status_code == 401
    assert "stale" in reply.json()["errors"]["X-Lnplugin-Timestamp"]


def test_a_changed_body_path_or_method_breaks_the_signature(
    server: Server, signer: tuple[str, str]
) -> None:
    secret, token = signer
    body = json.dumps({"amount": 21}).encode()
    headers = signed_headers(secret, "POST", "/invoices", body)
    tampered = json.dumps({"amount": 2100}).encode()
    for method, path, sent in (
        ("POST", "/invoices", tampered),
        ("POST", "/invoices?x=1", body),
    ):
        reply = send(server, token, method, path, headers, sent)
        assert reply.status_code == 401
        assert "does not match" in reply.json()["errors"]["X-Lnplugin-Signature"]
    wrong_key = signed_headers("lnps_not-the-secret", "GET", "/invoices")
    assert send(server, token, "GET", "/invoices", wrong_key).status_code == 401


def test_tokens_without_the_requirement_need_no_signature(server: Server) -> None:
    assert server.request("GET", "/invoices").status_code == 200


def _doc_block(language: str, stop: str) -> str:
    text = (Path(__file__).parent.parent / "docs" / "signed-requests.md").read_text()
    block = text.split(f"```{language}\n", 1)[1].split("```", 1)[0]
    return block.split(stop, 1)[0]  # the functions, without the example call after them


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js 18+ (fetch)")
def test_the_documented_javascript_signs_requests_the_server_accepts(
    server: Server, signer: tuple[str, str]
) -> None:
    secret, token = signer
    script = _doc_block("js", "const body =") + (
        f"const SECRET = {json.dumps(secret)}, TOKEN = {json.dumps(token)};\n"
        f"const URL = {json.dumps(server.url)};\n"
        "const body = JSON.stringify({ amount: 7 });\n"
        "const h = signedHeaders(SECRET, 'POST', '/invoices', body);\n"
        "const ok = verify(SECRET, 'POST', '/invoices', h['X-Lnplugin-Timestamp'],\n"
        "  h['X-Lnplugin-Nonce'], body, h['X-Lnplugin-Signature']);\n"
        "fetch(URL + '/invoices', { method: 'POST', body, headers: {\n"
        "  Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json', ...h } })\n"
        "  .then(r => console.log(ok, r.status));\n"
    )
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30)
    assert out.stdout.split() == ["true", "201"], out.stderr


def test_the_documented_python_signs_requests_the_server_accepts(
    server: Server, signer: tuple[str, str]
) -> None:
    secret, token = signer
    scope: dict[str, Any] = {}
    exec(_doc_block("python", "body = json.dumps"), scope)
    body = json.dumps({"amount": 8}).encode()
    headers = scope["signed_headers"](secret, "POST", "/invoices", body)
    args = ("POST", "/invoices", headers["X-Lnplugin-Timestamp"], headers["X-Lnplugin-Nonce"])
    assert scope["verify"](secret, *args, body, headers["X-Lnplugin-Signature"])
    assert send(server, token, "POST", "/invoices", headers, body).status_code == 201
