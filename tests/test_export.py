"""Exporting invoices: `GET /invoices/export` and `lnplugin export`, CSV and JSON Lines.

Boostagrams arrive through the dev node's keysend (node -> follower ->
store), with the text a spreadsheet export gets wrong: commas, quotes, CR
and LF inside a message, a leading `=`. Each test parses the export back
with the standard `csv` and `json` modules and compares it with what the
invoice API says about the same payments.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from lnplugin import bolt11
from lnplugin.api import create_app
from lnplugin.config import load_settings
from lnplugin.export import BOOST_FIELDS, COLUMNS, LATER_BOOST_FIELDS, cell
from lnplugin.service import Service
from lnplugin.store import invoices, tokens
from tests.helpers_tickers import Ticker

NASTY: dict[str, Any] = {
    "action": "boost",
    "app_name": 'Fountain, "beta"',
    "podcast": 'The "Quoted", Pod',
    "feedID": "920666",  # a string on the wire; parsed to an int
    "episode": "Ep 1\nwith a newline",
    "ts": 123,
    "value_msat_total": 21000,
    "sender_name": "@alice, bob",
    "message": '=HYPERLINK("x"),\r\nsecond "line", third\n',
    "guid": "917393e3-1b1e-5cef-ace4-edaa54e1f810",
    "extra": {"nested": [1, 2]},  # not a column: kept in the boostagram JSON
}


def keysend(client, headers, boost: dict, message: str | None = None, msat: int = 5000) -> dict:
    records = {"7629169": json.dumps(boost)}
    if message is not None:
        records["34349334"] = message
    reply = client.post(
        "/dev/keysend", json={"amount_msat": msat, "custom_records": records}, headers=headers
    )
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()


def invoice(client, headers, description: str = 'coffee, "large"') -> dict:
    reply = client.post(
        "/invoices",
        json={"amount": 21, "description": description, "payer_name": "Ann"},
        headers=headers,
    )
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()


def parse_csv(text: str) -> list[dict[str, str]]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(rows[0]) == COLUMNS
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows[1:]]


def parse_jsonl(text: str) -> list[dict]:
    assert text.endswith("\n") or text == ""
    return [json.loads(line) for line in text.splitlines()]


def get_export(client, headers, **params) -> str:
    reply = client.get("/invoices/export", query_string=params, headers=headers)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return reply.get_data(as_text=True)


@pytest.fixture
def payments(client, admin) -> list[dict]:
    """A plain invoice, a nasty boostagram with a chat message, and a plain boost."""
    return [
        invoice(client, admin),
        keysend(client, admin, NASTY, message='hi, "there"\nbye'),
        keysend(client, admin, {"podcast": "Plain", "message": "ok"}, msat=7000),
    ]


def test_csv_round_trip_keeps_commas_quotes_and_newlines_in_boostagrams(
    client, admin, payments
) -> None:
    rows = parse_csv(get_export(client, admin, format="csv"))
    assert [r["payment_hash"] for r in rows] == [p["payment_hash"] for p in payments]
    boost = rows[1]
    assert boost["boost_message"] == NASTY["message"]  # CR, LF, quotes and comma intact
    assert boost["boost_podcast"] == NASTY["podcast"]
    assert boost["boost_episode"] == NASTY["episode"]
    assert boost["boost_sender_name"] == NASTY["sender_name"]
    assert boost["boost_app_name"] == NASTY["app_name"]
    assert boost["boost_feedID"] == "920666"
    assert boost["keysend_message"] == 'hi, "there"\nbye'
    assert boost["is_keysend"] == "true" and boost["state"] == "SETTLED"
    assert boost["amount_received_msat"] == "5000"
    assert json.loads(boost["boostagram"])["extra"] == {"nested": [1, 2]}
    assert rows[0]["description"] == 'coffee, "large"' and rows[0]["payer_name"] == "Ann"
    assert rows[0]["boost_message"] == "" and rows[0]["is_keysend"] == "false"
    assert rows[0]["state"] == "CREATED" and rows[0]["settled_at"] == ""


def test_a_podcasters_csv_has_the_fields_to_answer_a_boost_and_shows_emoji_as_emoji(
    client, admin
) -> None:
    """What Helipad's export gives a podcaster: who sent it (sender_id), how to
    answer it (reply_custom_key/value), which split it came through
    (remote_*); and the whole boostagram readable in a spreadsheet."""
    boost = {
        "action": "boost",
        "app_name": "Fountain",
        "app_version": "1.2.3",
        "sender_id": "u-42",
        "message": "great show \U0001f680",
        "reply_address": "03" + "ab" * 32,
        "reply_custom_key": 696969,
        "reply_custom_value": "alice-wallet",
        "remote_feed_guid": "a1",
        "remote_item_guid": "b2",
        "speed": "1.5",  # no column of its own: in the boostagram cell
    }
    keysend(client, admin, boost)
    [row] = parse_csv(get_export(client, admin, format="csv"))
    assert row["boost_app_version"] == "1.2.3" and row["boost_sender_id"] == "u-42"
    assert row["boost_reply_custom_key"] == "696969"
    assert row["boost_reply_custom_value"] == "alice-wallet"
    assert (row["boost_remote_feed_guid"], row["boost_remote_item_guid"]) == ("a1", "b2")
    assert row["boost_message"] == "great show \U0001f680"
    assert "\U0001f680" in row["boostagram"] and "\\ud83d" not in row["boostagram"]
    assert json.loads(row["boostagram"])["speed"] == "1.5"


def test_jsonl_carries_the_same_values_as_csv_with_types(client, admin, payments) -> None:
    lines = parse_jsonl(get_export(client, admin, format="jsonl"))
    rows = parse_csv(get_export(client, admin, format="csv"))
    assert [tuple(line) for line in lines] == [COLUMNS] * len(payments)
    assert [{k: cell(v) for k, v in line.items()} for line in lines] == rows
    boost = lines[1]
    assert boost["boost_feedID"] == 920666 and boost["boost_ts"] == 123
    assert boost["boost_message"] == NASTY["message"]
    assert boost["boost_guid"] == NASTY["guid"]
    assert lines[0]["boost_message"] is None and lines[0]["is_keysend"] is False


def test_export_agrees_with_the_invoice_api(client, admin, payments) -> None:
    lines = parse_jsonl(get_export(client, admin, format="jsonl"))
    for line, paid in zip(lines, payments, strict=True):
        api = client.get(f"/invoices/{paid['payment_hash']}", headers=admin).get_json()
        assert line["identifier"] == api["identifier"]
        assert line["state"] == api["state"]
        assert line["amount_received_msat"] == api["amount_received_msat"]
        assert line["created_at"] == api["created_at"]
        assert line["settled_at"] == api["settled_at"]
        assert line["keysend_message"] == api["keysend_message"]
        assert json.loads(line["custom_records"] or "{}") == api["custom_records"]
        for name in BOOST_FIELDS + LATER_BOOST_FIELDS:
            assert line[f"boost_{name}"] == (api["boostagram"] or {}).get(name)
    assert "preimage" not in lines[1] and lines[1]["payment_hash"]


def test_type_and_since_filter_the_export(client, admin, service, payments) -> None:
    outgoing_hash = hashlib.sha256(b"out").hexdigest()
    with service.store.transaction() as tx:
        invoices.insert(
            tx,
            {
                "type": "outgoing",
                "payment_hash": outgoing_hash,
                "state": "SETTLED",
                "amount_msat": 9000,
                "amount_received_msat": 9000,
                "fee_msat": 12,
                "created_at": 1_000_000_000,  # 2001-09-09
                "settled_at": 1_000_000_001,
                "expiry": 0,
                "expires_at": 1_000_000_000,
                "list_seq": invoices.next_list_seq(tx, "outgoing"),
            },
        )
    out = parse_jsonl(get_export(client, admin, format="jsonl", type="outgoing"))
    assert [r["payment_hash"] for r in out] == [outgoing_hash]
    assert out[0]["fee_msat"] == 12
    incoming = parse_jsonl(get_export(client, admin, format="jsonl", type="incoming"))
    assert [r["payment_hash"] for r in incoming] == [p["payment_hash"] for p in payments]
    recent = parse_jsonl(get_export(client, admin, format="jsonl", since="2001-09-10"))
    assert outgoing_hash not in {r["payment_hash"] for r in recent}
    assert len(recent) == len(payments)
    everything = parse_jsonl(get_export(client, admin, format="jsonl", since="1000000000"))
    assert len(everything) == len(payments) + 1


def test_an_export_spanning_many_batches_has_every_row_once_in_order(client, admin, service):
    with service.store.transaction() as tx:
        for i in range(1234):  # more than two store batches of 500
            invoices.insert(
                tx,
                {
                    "type": "incoming",
                    "payment_hash": hashlib.sha256(str(i).encode()).hexdigest(),
                    "state": "OPEN",
                    "amount_msat": 1000 + i,
                    "description": f'row {i}, "{i}"',
                    "created_at": 1_700_000_000 + i,
                    "expiry": 10**9,
                    "expires_at": 1_700_000_000 + 10**9,
                },
            )
    rows = parse_csv(get_export(client, admin))  # csv is the default format
    assert [r["amount_msat"] for r in rows] == [str(1000 + i) for i in range(1234)]
    assert rows[7]["description"] == 'row 7, "7"'


def test_an_empty_store_exports_a_header_only(client, admin) -> None:
    assert parse_csv(get_export(client, admin, format="csv")) == []
    assert get_export(client, admin, format="jsonl") == ""


def test_the_response_is_a_download_with_the_format_media_type(client, admin, payments) -> None:
    reply = client.get("/invoices/export?format=jsonl", headers=admin)
    assert reply.headers["Content-Type"] == "application/x-ndjson"
    assert 'filename="lnplugin-invoices.jsonl"' in reply.headers["Content-Disposition"]
    reply = client.get("/invoices/export", headers=admin)
    assert reply.headers["Content-Type"] == "text/csv; charset=utf-8"


@pytest.mark.parametrize(
    "scopes,params,status",
    [
        (("invoices:read",), {"type": "incoming"}, 200),
        (("invoices:read",), {"type": "outgoing"}, 403),
        (("invoices:read",), {}, 403),
        (("transactions:read",), {"type": "outgoing"}, 200),
        (("transactions:read",), {"type": "incoming"}, 403),
        (("invoices:read", "transactions:read"), {}, 200),
        (("invoices:create",), {"type": "incoming"}, 403),
    ],
)
def test_the_export_needs_the_scopes_of_the_list_it_mirrors(
    client, make_token, scopes, params, status
) -> None:
    headers = {"Authorization": f"Bearer {make_token(*scopes)}"}
    reply = client.get("/invoices/export", query_string=params, headers=headers)
    assert reply.status_code == status, reply.get_data(as_text=True)
    if status == 403:
        assert reply.get_json()["error"] is True


def test_no_token_is_401(client) -> None:
    assert client.get("/invoices/export").status_code == 401


@pytest.mark.parametrize(
    "params,field",
    [
        ({"format": "xlsx"}, "format"),
        ({"type": "both"}, "type"),
        ({"since": "yesterday"}, "since"),
        ({"since": "99999999999999999999"}, "since"),
    ],
)
def test_bad_parameters_are_400_naming_each(client, admin, params, field) -> None:
    reply = client.get("/invoices/export", query_string=params, headers=admin)
    assert reply.status_code == 400
    body = reply.get_json()
    assert body["error"] is True and field in body["errors"]


# -- the command line ---------------------------------------------------------------------


def lnplugin(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command; its output decoded without newline translation, as CSV's
    CRLF row ends and a CR inside a quoted cell must reach the reader as written."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LNPLUGIN_")}
    proc = subprocess.run(
        [sys.executable, "-m", "lnplugin", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        timeout=60,
        env=env,
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


def test_the_command_writes_the_same_export_to_a_private_file(
    client, admin, payments, data_dir, tmp_path
) -> None:
    target = tmp_path / "boosts.csv"
    proc = lnplugin(data_dir, "export", "--format", "csv", "--output", str(target))
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    text = target.read_bytes().decode()
    assert parse_csv(text) == parse_csv(get_export(client, admin, format="csv"))
    assert "\r\n" in text  # RFC 4180 line ends survive the file write


def test_the_command_prints_jsonl_filtered_by_type_and_since(client, admin, payments, data_dir):
    proc = lnplugin(
        data_dir,
        "export",
        "--format",
        "jsonl",
        "--type",
        "incoming",
        "--since",
        "2020-01-01T00:00:00Z",
    )
    assert proc.returncode == 0, proc.stderr
    assert parse_jsonl(proc.stdout) == parse_jsonl(
        get_export(client, admin, format="jsonl", type="incoming")
    )
    proc = lnplugin(data_dir, "export", "--format", "jsonl", "--since", "2999-01-01")
    assert proc.returncode == 0 and proc.stdout == ""


def test_spreadsheet_safe_neutralises_formulas_only_when_asked(client, admin, payments, data_dir):
    raw = lnplugin(data_dir, "export")
    safe = lnplugin(data_dir, "export", "--spreadsheet-safe")
    assert parse_csv(raw.stdout)[1]["boost_message"] == NASTY["message"]
    assert parse_csv(safe.stdout)[1]["boost_message"] == "'" + NASTY["message"]
    assert parse_csv(safe.stdout)[1]["boost_podcast"] == NASTY["podcast"]


def test_the_http_export_is_spreadsheet_safe_when_asked_as_the_command_is(
    client, admin, payments, data_dir
):
    """A dashboard downloading the CSV over HTTP for a spreadsheet has the
    same choice as `lnplugin export --spreadsheet-safe`."""
    safe = client.get("/invoices/export?spreadsheet_safe=true", headers=admin)
    assert safe.status_code == 200
    assert safe.get_data(as_text=True) == lnplugin(data_dir, "export", "--spreadsheet-safe").stdout
    assert parse_csv(safe.get_data(as_text=True))[1]["boost_message"] == "'" + NASTY["message"]
    plain = client.get("/invoices/export?spreadsheet_safe=false", headers=admin)
    assert parse_csv(plain.get_data(as_text=True))[1]["boost_message"] == NASTY["message"]
    for query, why in (
        ("spreadsheet_safe=yes", "must be true or false"),
        ("spreadsheet_safe=true&format=jsonl", "is for CSV only (format=csv)"),
    ):
        reply = client.get(f"/invoices/export?{query}", headers=admin)
        assert reply.status_code == 400
        assert reply.get_json()["errors"] == {"spreadsheet_safe": why}


@pytest.mark.parametrize("name", ["lnplugin.sqlite", "lnplugin.sqlite-wal", "node.key"])
def test_the_command_refuses_to_write_over_the_data_dirs_own_files(
    client, admin, payments, data_dir, name
) -> None:
    """`-o lnplugin.sqlite` truncated the store it was reading."""
    target = data_dir / name
    rows = parse_csv(lnplugin(data_dir, "export").stdout)
    proc = lnplugin(data_dir, "export", "-o", str(target))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"Error: cannot write --output {target}: it is one of the data dir's own files"
    )
    assert len(rows) > 1 and parse_csv(lnplugin(data_dir, "export").stdout) == rows


def test_a_full_disk_is_one_line_and_an_existing_export_is_kept(
    client, admin, payments, data_dir, tmp_path
) -> None:
    full = lnplugin(data_dir, "export", "-o", "/dev/full")
    assert full.returncode == 2
    assert full.stderr.strip() == "Error: cannot write --output /dev/full (No space left on device)"
    # A file is written beside its name and renamed in whole: a link to one
    # is followed, and nothing half-written is ever left under the name.
    target, link = tmp_path / "boosts.csv", tmp_path / "latest.csv"
    link.symlink_to(target)
    assert lnplugin(data_dir, "export", "-o", str(link)).returncode == 0
    assert link.is_symlink() and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert parse_csv(target.read_bytes().decode()) == parse_csv(
        get_export(client, admin, format="csv")
    )
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_spreadsheet_safe_is_refused_for_jsonl_rather_than_ignored(data_dir) -> None:
    proc = lnplugin(data_dir, "export", "--format", "jsonl", "--spreadsheet-safe")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (
        "Error: Invalid value for --spreadsheet-safe: is for CSV only (--format csv)"
    )


def test_the_command_refuses_a_data_dir_without_a_store(tmp_path) -> None:
    proc = lnplugin(tmp_path / "nothing-here", "export")
    assert proc.returncode == 2
    assert "no lnplugin store" in proc.stderr
    assert not (tmp_path / "nothing-here").exists()


def test_a_bad_since_is_a_usage_error(tmp_path) -> None:
    proc = lnplugin(tmp_path, "export", "--since", "last week")
    assert proc.returncode == 2 and "--since" in proc.stderr


def test_a_real_server_streams_the_export_in_chunks(tmp_path) -> None:
    """Over waitress the export is sent as it is read (chunked, no Content-Length),
    and a client reading it piece by piece gets the same rows as the CLI."""
    from tests import e2e

    data = tmp_path / "data"
    with e2e.Server(data) as server:
        for n in range(3):
            reply = server.request(
                "POST", "/dev/keysend",
                json={"amount_msat": 1000 + n, "custom_records": {"7629169": json.dumps(NASTY)}},
            )  # fmt: skip
            assert reply.status_code == 200, reply.text
        reply = server.session.get(
            f"{server.url}/invoices/export?format=csv",
            headers={"Authorization": f"Bearer {server.token}"},
            stream=True,
            timeout=30,
        )
        assert reply.status_code == 200
        assert reply.headers.get("Transfer-Encoding") == "chunked"
        assert "Content-Length" not in reply.headers
        body = b"".join(reply.iter_content(chunk_size=100)).decode()
        rows = parse_csv(body)
        assert [r["amount_received_msat"] for r in rows] == ["1000", "1001", "1002"]
        assert all(r["boost_message"] == NASTY["message"] for r in rows)
        assert parse_csv(lnplugin(data, "export").stdout) == rows


def test_a_lone_surrogate_in_a_boostagram_does_not_break_the_export(tmp_path) -> None:
    """`"\\ud800"` is a valid JSON escape a sender can put in a boostagram; it
    decodes to text UTF-8 cannot hold, and the export answered 500 (the
    command a traceback) for every row. JSON Lines keeps the escape, CSV shows
    U+FFFD; the rows around it are exported as usual."""
    from tests import e2e

    data = tmp_path / "data"
    with e2e.Server(data) as server:
        for raw in ('{"message": "a\\ud800b", "guid": "g"}', '{"message": "after"}'):
            reply = server.request(
                "POST", "/dev/keysend",
                json={"amount_msat": 1000, "custom_records": {"7629169": raw}},
            )  # fmt: skip
            assert reply.status_code == 200, reply.text
        assert server.request("GET", "/invoices/incoming").json()[1]["boostagram"] == {
            "message": "a\ud800b",
            "guid": "g",
        }
        exported = {}
        for fmt in ("csv", "jsonl"):
            reply = server.request("GET", "/invoices/export", params={"format": fmt})
            assert reply.status_code == 200, reply.text
            command = lnplugin(data, "export", "--format", fmt)
            assert command.returncode == 0, command.stderr
            assert command.stdout == reply.content.decode()
            exported[fmt] = command.stdout
    rows = parse_jsonl(exported["jsonl"])
    assert [r["boost_message"] for r in rows] == ["a\ud800b", "after"]
    assert [json.loads(r["boostagram"])["message"] for r in rows] == ["a\ud800b", "after"]
    assert [r["boost_message"] for r in parse_csv(exported["csv"])] == ["a\ufffdb", "after"]


def test_creates_while_long_exports_stream_all_commit_and_are_all_stored(tmp_path) -> None:
    """An export longer than one piece is read on in whichever worker thread is
    free next. Read through the connection of the thread that began it, its
    SELECTs ran inside other requests' transactions on that thread: creates
    failed with a false "store is busy" 503 or a 500, and some invoices were
    minted on the node but never stored (the soak audit: 791 of 2,453)."""
    import threading

    import requests

    from tests import e2e

    data = tmp_path / "data"
    creates: list[int] = []
    exports: list[int] = []
    with e2e.Server(data) as server:
        boost = json.dumps({"message": "x" * 200})
        for n in range(300):  # a JSONL export of ~300 KB: several pieces
            reply = server.request(
                "POST", "/dev/keysend",
                json={"amount_msat": 1000 + n, "custom_records": {"7629169": boost}},
            )  # fmt: skip
            assert reply.status_code == 200, reply.text
        done = threading.Event()

        headers = {"Authorization": f"Bearer {server.token}"}

        def create() -> None:
            with requests.Session() as session:
                for _ in range(120):
                    reply = session.post(
                        f"{server.url}/invoices", json={"amount": 5}, headers=headers, timeout=30
                    )
                    creates.append(reply.status_code)

        def export() -> None:
            with requests.Session() as session:
                while not done.is_set():
                    reply = session.get(
                        f"{server.url}/invoices/export?format=jsonl", headers=headers, timeout=60
                    )
                    exports.append(reply.status_code)
                    assert len(reply.content) > 64 * 1024

        creators = [threading.Thread(target=create) for _ in range(2)]
        exporters = [threading.Thread(target=export) for _ in range(2)]
        for thread in creators + exporters:
            thread.start()
        for thread in creators:
            thread.join()
        done.set()
        for thread in exporters:
            thread.join()
    assert creates == [201] * 240
    assert exports and set(exports) == {200}
    assert e2e.scalar(data, "SELECT COUNT(*) FROM invoices") == (300 + 240,)


# -- the newer invoice fields: fiat price, items, hold state, address, viewed --------

NASTY_ITEMS = [
    {"description": 'Latte, "oat"\nlarge', "unit_price": 350, "quantity": 2},
    {"description": "=SUM(A1), tip\r\n", "unit_price": 100},
]


@pytest.fixture
def rich(tmp_path: Path) -> Iterator[tuple[Any, dict[str, str], Service]]:
    """A service priced in USD from a local ticker (60000 USD/BTC), with a public URL."""
    ticker = Ticker({"usd": {"rate": "60000"}})
    settings = load_settings(
        {
            "data_dir": str(tmp_path / "data"),
            "token_rate_limit": "1000000/minute",
            "public_url": "https://shop.example",
            "fiat_provider": (ticker.provider("one"),),
            "fiat_allow": ("127.0.0.1/32",),
        },
        environ={},
    )
    svc = Service.build(settings)
    svc.start()
    app = create_app(svc)
    app.testing = True
    with svc.store.transaction() as tx:
        _, token = tokens.create(tx, ["admin"])
    try:
        yield app.test_client(), {"Authorization": f"Bearer {token}"}, svc
    finally:
        svc.stop()
        ticker.close()


def test_the_newer_fields_round_trip_in_csv_and_jsonl(rich) -> None:
    client, admin, _ = rich
    priced = client.post(
        "/invoices",
        json={"currency": "USD", "items": NASTY_ITEMS, "description": "order"},
        headers=admin,
    ).get_json()
    assert priced["price"]["amount"] == 800, priced
    checkout = priced["checkout_url"].removeprefix("https://shop.example")
    assert client.get(checkout).status_code == 200  # sets viewed_at
    held_hash = hashlib.sha256(os.urandom(32)).hexdigest()
    held = client.post(
        "/invoices",
        json={"amount": 21, "payment_hash": held_hash, "min_cltv_expiry_delta": 144},
        headers=admin,
    )
    assert held.status_code == 201, held.get_json()
    paid = client.post("/dev/pay", json={"payment_hash": held_hash}, headers=admin)
    assert paid.get_json()["state"] == "ACCEPTED"
    dropped = invoice(client, admin)
    client.post(f"/invoices/{dropped['payment_hash']}/cancel", headers=admin)
    made = client.post("/lightning_addresses", json={"username": "shop"}, headers=admin)
    assert made.status_code == 201, made.get_json()
    pr = client.get("/lnurlp/shop/callback?amount=21000").get_json()["pr"]

    lines = parse_jsonl(get_export(client, admin, format="jsonl"))
    rows = parse_csv(get_export(client, admin, format="csv"))
    assert tuple(lines[0]) == COLUMNS and len(lines) == len(rows) == 4
    assert [{k: cell(v) for k, v in line.items()} for line in lines] == rows
    api = {
        line["payment_hash"]: client.get(
            f"/invoices/{line['payment_hash']}", headers=admin
        ).get_json()
        for line in lines
    }

    fiat_line, fiat_row = lines[0], rows[0]
    price = api[fiat_line["payment_hash"]]["price"]
    assert fiat_line["price_currency"] == "USD" and fiat_line["price_amount"] == 800
    assert fiat_line["price_rate"] == price["rate"] and Decimal(fiat_line["price_rate"]) == 60000
    assert fiat_line["price_rate_source"] == price["rate_source"]
    assert fiat_line["price_rate_at"] == price["rate_at"] is not None
    assert fiat_line["fiat_currency"] == "USD" and fiat_line["fiat_in_cents"] == 800
    assert fiat_row["price_amount"] == "800" and fiat_row["fiat_in_cents"] == "800"
    assert json.loads(fiat_row["items"]) == [
        {**NASTY_ITEMS[0]},
        {**NASTY_ITEMS[1], "quantity": 1},
    ]  # commas, quotes, CR and LF intact through CSV
    assert json.loads(fiat_line["items"]) == api[fiat_line["payment_hash"]]["items"]
    assert fiat_line["viewed_at"] == api[fiat_line["payment_hash"]]["viewed_at"] is not None
    assert fiat_line["hold"] is False and fiat_row["hold"] == "false"

    held_line = lines[1]
    assert held_line["hold"] is True and held_line["state"] == "ACCEPTED"
    assert held_line["settle_deadline"] == api[held_hash]["settle_deadline"] is not None
    assert rows[1]["settle_deadline"] == str(held_line["settle_deadline"])
    assert lines[2]["cancel_reason"] == "canceled through the API" == rows[2]["cancel_reason"]
    assert lines[2]["state"] == "CANCELED" and lines[2]["settle_deadline"] is None

    address_line = lines[3]
    assert address_line["payment_hash"] == bolt11.decode(pr).payment_hash
    assert address_line["lightning_address"] == "shop" == rows[3]["lightning_address"]
    # Absent values: null in JSON Lines, empty in CSV.
    assert address_line["price_currency"] is None and rows[3]["price_currency"] == ""
    assert address_line["items"] is None and address_line["viewed_at"] is None


# The header 0.1.0 wrote, then the columns appended since, in the order they
# came: an upgraded lnplugin's export must start with an older one's, cell
# for cell (a check relative to BOOST_FIELDS let six columns land mid-row).
HEADER_0_1_0 = [
    "identifier",
    "type",
    "state",
    "payment_hash",
    "amount_msat",
    "amount_received_msat",
    "fee_msat",
    "created_at",
    "settled_at",
    "expires_at",
    "description",
    "comment",
    "payer_name",
    "payer_email",
    "payer_pubkey",
    "metadata",
    "is_keysend",
    "keysend_message",
    "boost_action",
    "boost_app_name",
    "boost_sender_name",
    "boost_message",
    "boost_podcast",
    "boost_feedID",
    "boost_guid",
    "boost_url",
    "boost_episode",
    "boost_itemID",
    "boost_episode_guid",
    "boost_ts",
    "boost_time",
    "boost_value_msat",
    "boost_value_msat_total",
    "boost_name",
    "boost_boost_link",
    "boost_reply_address",
    "boostagram",
    "custom_records",
    "destination",
]
APPENDED = [
    "viewed_at,price_currency,price_amount,price_rate,price_rate_source,price_rate_at,"
    "fiat_currency,fiat_in_cents,items,hold,settle_deadline,cancel_reason,lightning_address",
    "boost_app_version,boost_sender_id,boost_reply_custom_key,boost_reply_custom_value,"
    "boost_remote_feed_guid,boost_remote_item_guid",
]


def test_new_columns_are_appended_after_the_old_ones() -> None:
    """Users' spreadsheets read columns by position: a column, once exported,
    keeps its place in every later version."""
    header = list(HEADER_0_1_0)
    assert len(header) == 39
    for added in APPENDED:
        assert list(COLUMNS[: len(header)]) == header
        header += added.split(",")
    assert list(COLUMNS) == header


def test_the_readme_lists_every_column() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Export:", 1)[1].split("\n### ", 1)[0]
    for column in COLUMNS:
        name = column.removeprefix("boost_") if column.startswith("boost_") else column
        assert f"`{name}`" in section, column
