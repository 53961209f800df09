"""Deliveries are signed per Standard Webhooks, checked with the independent
`standardwebhooks` package: endpoint secrets, the service-wide secret for an
invoice's own `webhook` URL, and its rotation."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from lnplugin.store.webhooks import new_secret
from lnplugin.webhooks import signed_headers
from tests.helpers_webhooks import Receiver, Server, run_cli, wait_for


def test_signature_verifies_with_standardwebhooks() -> None:
    secret = new_secret()
    body = b'{"type":"invoice.incoming.settled","data":{}}'
    headers = signed_headers([secret], "evt_1", body)
    assert Webhook(secret).verify(body, headers) == {"type": "invoice.incoming.settled", "data": {}}
    assert headers["webhook-signature"].startswith("v1,")


def test_secret_is_whsec_base64_of_32_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32


def test_tampered_body_or_other_secret_fails() -> None:
    secret = new_secret()
    headers = signed_headers([secret], "evt_1", b'{"a":1}')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(b'{"a":1}', headers)


def test_two_secrets_give_two_signatures_each_valid() -> None:
    old, new = new_secret(), new_secret()
    headers = signed_headers([new, old], "evt_1", b"{}")
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(b"{}", headers) == {}
    assert Webhook(old).verify(b"{}", headers) == {}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"LNPLUGIN_WEBHOOK_ALLOW": "127.0.0.0/8", "LNPLUGIN_WEBHOOK_RETRY_SCHEDULE": "1"}
    srv = Server(tmp_path_factory.mktemp("signing"), env).start()
    yield srv
    srv.stop()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


def test_endpoint_delivery_verifies_with_endpoint_secret(
    server: Server, receiver: Receiver
) -> None:
    endpoint = server.add_endpoint(receiver.url("/signed"))
    invoice = server.create_invoice()
    server.pay(invoice["payment_hash"])
    [delivery] = wait_for(
        lambda: receiver.of_type("invoice.incoming.settled", invoice["payment_hash"])
    )
    payload = Webhook(endpoint["endpoint_secret"]).verify(delivery.body, delivery.headers)
    assert payload["data"]["state"] == "SETTLED"
    assert payload["data"]["payment_hash"] == invoice["payment_hash"]
    assert delivery.headers["webhook-id"].startswith("evt_")
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(delivery.body, delivery.headers)


def test_invoice_webhook_signed_with_service_secret_and_rotation(
    server: Server, receiver: Receiver
) -> None:
    data_dir: Path = server.data_dir
    secret = run_cli("webhook-secret", data_dir=data_dir).strip().splitlines()[-1]
    assert secret == run_cli("webhook-secret", data_dir=data_dir).strip().splitlines()[-1]

    invoice = server.create_invoice(webhook=receiver.url("/invoice-hook"))
    created = wait_for(
        lambda: receiver.of_type("invoice.incoming.created", invoice["payment_hash"])
    )
    assert Webhook(secret).verify(created[0].body, created[0].headers)["data"]["state"] == (
        "CREATED"
    )

    rotated = run_cli("webhook-secret", "--rotate", data_dir=data_dir).strip().splitlines()[-1]
    assert rotated != secret and rotated.startswith("whsec_")
    server.pay(invoice["payment_hash"])
    [settled] = wait_for(
        lambda: receiver.of_type("invoice.incoming.settled", invoice["payment_hash"])
    )
    # During the grace period both the new and the previous secret verify.
    assert Webhook(rotated).verify(settled.body, settled.headers)["data"]["settled"] is True
    assert Webhook(secret).verify(settled.body, settled.headers)["data"]["settled"] is True


def _doc_block(language: str) -> str:
    """docs/webhooks.md's hand-written verifier in `language` (the block with
    `function verify` / `def verify`)."""
    text = (Path(__file__).parent.parent / "docs" / "webhooks.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split(f"```{language}\n")[1:]]
    [block] = [b for b in blocks if "def verify" in b or "function verify" in b]
    return block


def test_the_documented_python_verifier_takes_lnplugins_signatures() -> None:
    """Both signatures during a rotation, and nothing forged or altered."""
    scope: dict[str, Any] = {}
    exec(_doc_block("python"), scope)
    verify = scope["verify"]
    old, new = new_secret(), new_secret()
    body = b'{"type":"invoice.incoming.settled"}'
    headers = signed_headers([new, old], "evt_1", body)
    assert verify(new, headers, body) and verify(old, headers, body)
    assert not verify(new_secret(), headers, body)
    assert not verify(new, headers, body + b" ")


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_the_documented_javascript_verifier_takes_lnplugins_signatures() -> None:
    old, new = new_secret(), new_secret()
    body = '{"type":"invoice.incoming.settled","data":{"memo":"café"}}'
    headers = signed_headers([new, old], "evt_1", body.encode())
    script = _doc_block("js") + (
        f"const h = {json.dumps(headers)}, body = Buffer.from({json.dumps(body)});\n"
        f"console.log(verify({json.dumps(new)}, h, body), verify({json.dumps(old)}, h, body),\n"
        f"  verify({json.dumps(new_secret())}, h, body),\n"
        f"  verify({json.dumps(new)}, h, Buffer.concat([body, Buffer.from(' ')])));\n"
    )
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30)
    assert out.stdout.split() == ["true", "true", "false", "false"], out.stderr
