"""One boost, three node kinds: what a podcaster reads must not depend on the node.

The records are those of a real Core Lightning v26.06.6 keysend
(tests/fixtures/cln/hooks_b.json: a boostagram, a 696969 custom key and a
7629171 tip note). They reach lnplugin as each node delivers them: the
captured hop payload itself through the CLN plugin hook (a real plugin
process under the CLN simulator), the same records in a keysend over the
LND simulator's gRPC (each HTLC also carrying the sender's 5482373484
preimage record, as lnd lists it), and on the dev node over `POST
/dev/keysend` and `lnplugin dev keysend`, given the records a sender puts
on the wire, preimage record included. Every lnplugin is a real process
read over HTTP.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lnplugin import bolt11
from lnplugin.boostagram import KEYSEND_PREIMAGE
from lnplugin.nodes.cln.tlv import custom_records, encode_payload
from lnplugin_sim.cln_plugin_driver import PluginDriver
from lnplugin_sim.cln_sim import ClnSim
from lnplugin_sim.lnd_sim import LndSim
from tests import e2e
from tests.e2e import Api, Server, wait_for
from tests.test_lnd_e2e import serve_args

tmp = e2e.fixture_tmp

FIXTURES = Path(__file__).parent / "fixtures" / "cln"
# The keysend's htlc_accepted, as a plugin after CLN's keysend plugin saw it.
KEYSEND_HOOK = [
    e["params"]
    for e in json.loads((FIXTURES / "hooks_b.json").read_text())
    if e["kind"] == "hook:htlc_accepted"
][2]
REAL_PAYLOAD = KEYSEND_HOOK["onion"]["payload"]
RECORDS = custom_records(REAL_PAYLOAD)
AMOUNT_MSAT = KEYSEND_HOOK["htlc"]["amount_msat"]
FEED_GUID = "917393e3-1b1e-5cef-ace4-edaa54e1f810"

# What a podcaster reads of a boost, the same whatever node took it.
SHOWN = (
    "amount",
    "amount_msat",
    "amount_received_msat",
    "boostagram",
    "custom_records",
    "is_keysend",
    "keysend_message",
    "payment_request",
    "settled",
    "state",
    "type",
)


def _seen(api: Api, payment_hash: str) -> dict[str, Any]:
    try:
        return wait_for(
            lambda: (i := api.incoming(payment_hash)) and i.get("custom_records") and i,
            "the boost",
        )
    except AssertionError:
        got = api.incoming(payment_hash)
        why = "never stored" if got is None else f"stored without its records: {got}"
        raise AssertionError(f"the boost {payment_hash} was {why}") from None


def _read(api: Api, payment_hash: str) -> dict[str, Any]:
    """The boost as the invoice object shows it, and as lists, filters and
    the export find it."""
    got = _seen(api, payment_hash)
    shown = {k: got[k] for k in SHOWN}
    for name, value in (
        ("q[feed_guid]", FEED_GUID),
        ("q[item_guid]", "abc-1"),
        ("q[action]", "boost"),
        ("q[boostagram]", "true"),
    ):
        found = api.get("/invoices/incoming", params={name: value})
        assert [i["payment_hash"] for i in found] == [payment_hash], name
    lines = api.session.get(f"{api.url}/invoices/export", params={"format": "jsonl"}, timeout=10)
    lines.raise_for_status()
    rows = [json.loads(line) for line in lines.text.splitlines()]
    (row,) = [r for r in rows if r["payment_hash"] == payment_hash]
    shown["export"] = {
        k: v for k, v in row.items() if k.startswith("boost") or k == "custom_records"
    }
    return shown


@pytest.fixture
def cln_plugin(tmp: Path) -> Iterator[tuple[ClnSim, PluginDriver, Api]]:
    with ClnSim(tmp / "cln", tmp / "rpc") as sim, PluginDriver(sim, tmp / "cln-data") as plugin:
        api = Api(plugin.url, plugin.admin_token)
        yield sim, plugin, api
        api.close()


def test_the_real_cln_keysend_reads_the_same_on_every_node(
    tmp: Path, cln_plugin: tuple[ClnSim, PluginDriver, Api]
) -> None:
    assert set(RECORDS) == {696969, 7629169, 7629171}
    sender_preimage = secrets.token_bytes(32)
    on_the_wire = {**RECORDS, KEYSEND_PREIMAGE: sender_preimage}

    # Core Lightning, plugin mode: the captured payload itself reaches the hook.
    sim, plugin, cln_api = cln_plugin
    row = sim.keysend(
        AMOUNT_MSAT, on_the_wire, on_htlc=lambda h, _: plugin.htlc_accepted(h, REAL_PAYLOAD)
    )
    cln = _read(cln_api, row["payment_hash"])

    # lnd: the same records over gRPC.
    with _on_lnd(tmp) as (lnd_sim, lnd_api):
        paid = lnd_sim.keysend(AMOUNT_MSAT, RECORDS, preimage=sender_preimage)
        lnd = _read(lnd_api, paid.r_hash.hex())
        lnd_api.close()

    # The dev node, over HTTP and from the command line.
    wire = {str(t): "hex:" + v.hex() for t, v in on_the_wire.items()}
    with Server(tmp / "dev-data") as server:
        assert server.token
        dev_api = Api(server.url, server.token)
        r = server.request(
            "POST", "/dev/keysend", json={"amount_msat": AMOUNT_MSAT, "custom_records": wire}
        )
        assert r.status_code == 200, r.text
        dev = _read(dev_api, r.json()["payment_hash"])
        args = [f"--record={t}={v}" for t, v in wire.items()]
        out = e2e.cli(server.data_dir, "dev", "keysend", f"--amount-msat={AMOUNT_MSAT}", *args)
        cli_hash = json.loads(out)["payment_hash"]
        cli_seen = _seen(dev_api, cli_hash)
        dev_api.close()

    assert cln["boostagram"]["value_msat_total"] == 21000  # "21000" as sent, read as a number
    assert cln["boostagram"]["itemID"] == 4242
    assert cln["boostagram"]["guid"] == FEED_GUID
    assert cln["custom_records"] == {
        str(t): base64.b64encode(v).decode() for t, v in RECORDS.items()
    }
    assert str(KEYSEND_PREIMAGE) not in cln["custom_records"]  # a secret, never stored
    assert cln["amount_received_msat"] == AMOUNT_MSAT and cln["is_keysend"] is True
    assert lnd == cln
    assert dev == cln
    assert {k: cli_seen[k] for k in SHOWN} == {k: v for k, v in cln.items() if k != "export"}


@contextlib.contextmanager
def _on_lnd(tmp: Path) -> Iterator[tuple[LndSim, Api]]:
    """The LND simulator and a real `lnplugin serve` following it over gRPC."""
    with (
        LndSim(tmp / "lnd", network="regtest", port=0) as lnd_sim,
        Server(tmp / "lnd-data", *serve_args(lnd_sim)) as server,
    ):
        assert server.token
        yield lnd_sim, Api(server.url, server.token)


def _tu(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def test_a_boost_on_a_bolt11_payment_in_two_parts_reads_the_same_on_cln_and_lnd(
    tmp: Path, cln_plugin: tuple[ClnSim, PluginDriver, Api]
) -> None:
    """Helipad boosts a Lightning Address by paying its BOLT11 invoice with
    the boostagram in TLV 7629169; a large payment arrives in parts, each
    carrying the records."""
    boost = {7629169: RECORDS[7629169]}
    total = 42_000

    sim, plugin, cln_api = cln_plugin
    made = cln_api.post("/invoices", {"amount": total // 1000, "description": "boost me"})
    secret = bytes.fromhex(bolt11.decode(made["payment_request"]).payment_secret or "")
    for part in (total // 2, total - total // 2):
        fields = {2: _tu(part), 4: _tu(sim.blockheight + 11), 8: secret + _tu(total)}
        plugin.htlc_accepted(made["payment_hash"], encode_payload({**fields, **boost}))
    sim.pay(made["payment_request"])  # the parts made up the amount: lightningd settles
    cln = _read(cln_api, made["payment_hash"])

    with _on_lnd(tmp) as (lnd_sim, lnd_api):
        made = lnd_api.post("/invoices", {"amount": total // 1000, "description": "boost me"})
        lnd_sim.pay_invoice(made["payment_hash"], htlc_records=[boost, boost])
        lnd = _read(lnd_api, made["payment_hash"])
        lnd_api.close()

    assert cln["boostagram"]["sender_name"] == "@alice" and cln["is_keysend"] is False
    assert cln["amount_received_msat"] == total
    cln.pop("payment_request")
    lnd.pop("payment_request")
    assert lnd == cln
