"""The CLN scenarios against the Docker regtest network in `regtest/`.

Needs Docker and a running, funded network (`regtest/up.sh && regtest/fund.sh`),
so it runs only with LNPLUGIN_REGTEST=1. Every other test runs against the
simulator and needs nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import Api, wait_for

pytestmark = pytest.mark.skipif(
    os.environ.get("LNPLUGIN_REGTEST") != "1",
    reason="regtest network tests need Docker: run regtest/up.sh and regtest/fund.sh, "
    "then set LNPLUGIN_REGTEST=1",
)

REGTEST = Path(__file__).resolve().parents[2] / "regtest"
URL = f"http://127.0.0.1:{os.environ.get('LNPLUGIN_REGTEST_PORT', '8080')}"
DATA = "/root/.lightning/regtest/lnplugin-data"


def compose(*args: str, check: bool = True) -> str:
    proc = subprocess.run(
        ["docker", "compose", *args], cwd=REGTEST, capture_output=True, text=True, timeout=120
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"docker compose {' '.join(args)}: {proc.stderr}")
    return proc.stdout


def cli(service: str, *args: str) -> Any:
    out = compose("exec", "-T", service, "lightning-cli", "--network=regtest", *args)
    return json.loads(out)


def script(name: str, *args: str) -> str:
    proc = subprocess.run([str(REGTEST / name), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    token = compose(
        "exec", "-T", "cln-b", "/opt/lnplugin/bin/lnplugin", "token", "create",
        "--scope", "admin", "--data-dir", DATA,
    ).strip().splitlines()[-1]  # fmt: skip
    client = Api(URL, token)
    wait_for(lambda: client.get("/info"), "lnplugin on cln-b", timeout=60)
    yield client
    client.close()


def _label() -> str:
    return f"regtest-{uuid.uuid4().hex}"


def test_create_pay_and_see_the_settlement(api: Api) -> None:
    created = api.post("/invoices", {"amount": 1000, "description": "regtest"})
    assert cli("cln-a", "pay", created["payment_request"])["status"] == "complete"
    got = wait_for(lambda: api.settled(created["payment_hash"]), "settlement")
    assert got["amount_received_msat"] == 1_000_000


def test_keysend_boostagram_and_message_in_plugin_mode(api: Api) -> None:
    reply = json.loads(script("keysend.sh", "21", "lnd", "great show"))
    payment_hash = reply["payment_hash"]
    got = wait_for(lambda: api.incoming(payment_hash), "the keysend", timeout=60)
    assert got["is_keysend"] is True
    assert got["boostagram"]["message"] == "great show"
    assert got["keysend_message"] == "great show"
    assert {"7629169", "34349334"} <= set(got["custom_records"])


def test_outgoing_payment_appears(api: Api) -> None:
    bolt11 = cli("cln-a", "invoice", "5000sat", _label(), "for cln-b")["bolt11"]
    paid = cli("cln-b", "pay", bolt11)
    compose("restart", "cln-b")  # outgoing history is read at start and on the sweep
    got = wait_for(
        lambda: [
            o for o in api.get("/invoices/outgoing") if o["payment_hash"] == paid["payment_hash"]
        ],
        "the outgoing payment",
        timeout=90,
    )
    assert got[0]["amount_msat"] == 5_000_000


def test_invoice_created_outside_lnplugin_appears(api: Api) -> None:
    made = cli("cln-b", "invoice", "2000sat", _label(), "by hand")
    cli("cln-a", "pay", made["bolt11"])
    got = wait_for(lambda: api.incoming(made["payment_hash"]), "the outside invoice")
    assert got["description"] == "by hand"


def test_killed_repeatedly_while_paying_each_once(api: Api) -> None:
    hashes = []
    for i in range(40):
        made = cli("cln-b", "invoice", "100sat", _label(), f"kill {i}")
        cli("cln-a", "pay", made["bolt11"])
        hashes.append(made["payment_hash"])
        if i % 8 == 7:  # SIGKILL the plugin; lightningd restarts nothing, so start it again
            compose("exec", "-T", "cln-b", "pkill", "-KILL", "-f", "lnplugin-cln", check=False)
            time.sleep(1)
            cli("cln-b", "plugin", "start", "/opt/lnplugin/bin/lnplugin-cln",
                "lnplugin-host=0.0.0.0", "lnplugin-port=8080")  # fmt: skip
    for payment_hash in hashes:
        wait_for(lambda h=payment_hash: api.settled(h), "every payment", timeout=90)
    incoming = [i["payment_hash"] for i in api.get("/invoices/incoming", params={"items": 100})]
    assert all(incoming.count(h) == 1 for h in hashes)


def test_restart_replays_hook_records_once(api: Api) -> None:
    reply = json.loads(script("keysend.sh", "33", "lnd", "replay me"))
    payment_hash = reply["payment_hash"]
    first = wait_for(lambda: api.incoming(payment_hash), "the keysend", timeout=60)
    compose("restart", "cln-b")
    again = wait_for(lambda: api.incoming(payment_hash), "after restart", timeout=90)
    assert again["custom_records"] == first["custom_records"]
    incoming = [i["payment_hash"] for i in api.get("/invoices/incoming", params={"items": 100})]
    assert incoming.count(payment_hash) == 1
