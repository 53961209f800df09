"""GET /invoices, /invoices/incoming and /invoices/outgoing: filters, paging and cursors.

Rows are inserted through the store layer, so a test can hold hundreds of
invoices with known creation times and still run in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict

import pytest

from lnplugin.store import invoices
from tests.helpers_store import invoice_by_id

T0 = 1_700_000_000


def add(service, n: int, *, settled: bool = False, start: int = 0, step: int = 10) -> list[dict]:
    """Insert `n` invoices, oldest first, created at T0 + (start + i) * step."""
    rows = []
    with service.store.transaction() as tx:
        for i in range(start, start + n):
            created = T0 + i * step
            fields = {
                "type": "incoming",
                "payment_hash": hashlib.sha256(f"{created}-{settled}".encode()).hexdigest(),
                "state": "SETTLED" if settled else "OPEN",
                "amount_msat": 1000 * (i + 1),
                "description": f"invoice {i}",
                "created_at": created,
                "expiry": 10**9,
                "expires_at": created + 10**9,
            }
            if settled:
                fields.update(
                    settled_at=created + 1,
                    amount_received_msat=fields["amount_msat"],
                    preimage="00" * 32,
                    list_seq=invoices.next_list_seq(tx, "incoming"),
                )
            row = invoice_by_id(tx, invoices.insert(tx, fields))
            rows.append(asdict(row))
    return rows


def ids(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [inv["identifier"] for inv in response.get_json()]


def newest_first(rows: list[dict]) -> list[str]:
    return [r["identifier"] for r in reversed(rows)]


def every_page(client, read, url: str) -> list[str]:
    """The identifiers on pages 1, 2, ... of `url` (which has a query), up to the first empty."""
    seen: list[str] = []
    for page in range(1, 20):
        got = ids(client.get(f"{url}&page={page}", headers=read))
        if not got:
            break
        seen += got
    return seen


@pytest.fixture
def read(make_token):
    return {"Authorization": f"Bearer {make_token('invoices:read', 'transactions:read')}"}


# -- which invoices each list holds ---------------------------------------------------------


def test_incoming_lists_only_settled_invoices(client, service, read):
    add(service, 3)
    settled = add(service, 2, settled=True, start=3)
    assert ids(client.get("/invoices/incoming", headers=read)) == newest_first(settled)


def test_all_lists_open_and_settled_invoices(client, service, read):
    rows = add(service, 3) + add(service, 2, settled=True, start=3)
    assert ids(client.get("/invoices", headers=read)) == newest_first(rows)


def test_outgoing_is_empty_on_the_dev_node(client, service, read):
    add(service, 2, settled=True)
    r = client.get("/invoices/outgoing", headers=read)
    assert r.status_code == 200
    assert r.get_json() == []


def test_lists_return_full_alby_invoice_objects(client, service, read):
    add(service, 1, settled=True)
    (inv,) = client.get("/invoices/incoming", headers=read).get_json()
    assert inv["state"] == "SETTLED" and inv["settled"] is True
    assert inv["amount"] == 1 and inv["type"] == "incoming"
    assert inv["created_at"].endswith("Z")


def test_an_invoice_paid_through_the_api_moves_into_incoming(client, admin, read):
    inv = client.post("/invoices", json={"amount": 1}, headers=admin).get_json()
    assert ids(client.get("/invoices/incoming", headers=read)) == []
    client.post("/dev/pay", json={"payment_hash": inv["payment_hash"]}, headers=admin)
    assert ids(client.get("/invoices/incoming", headers=read)) == [inv["identifier"]]


def test_incoming_is_ordered_by_settlement_newest_first(client, admin, read):
    a = client.post("/invoices", json={"amount": 1}, headers=admin).get_json()
    b = client.post("/invoices", json={"amount": 1}, headers=admin).get_json()
    for inv in (b, a):  # b is paid first, so a is the newest settlement
        client.post("/dev/pay", json={"payment_hash": inv["payment_hash"]}, headers=admin)
    assert ids(client.get("/invoices/incoming", headers=read)) == [a["identifier"], b["identifier"]]


# -- items and page --------------------------------------------------------------------------


def test_items_defaults_to_25(client, service, read):
    rows = add(service, 30)
    assert ids(client.get("/invoices", headers=read)) == newest_first(rows)[:25]


def test_items_can_be_raised_to_100(client, service, read):
    rows = add(service, 120)
    assert ids(client.get("/invoices?items=100", headers=read)) == newest_first(rows)[:100]
    assert ids(client.get("/invoices?items=1", headers=read)) == newest_first(rows)[:1]


@pytest.mark.parametrize("path", ["/invoices", "/invoices/incoming"])
def test_paging_walks_every_row_exactly_once(client, service, read, path):
    rows = add(service, 53, settled=True)
    assert every_page(client, read, f"{path}?items=7") == newest_first(rows)


def test_a_page_past_the_end_is_empty(client, service, read):
    add(service, 5)
    assert ids(client.get("/invoices?items=5&page=2", headers=read)) == []
    assert ids(client.get("/invoices?page=1000000", headers=read)) == []


# -- created_at filters ------------------------------------------------------------------------


def test_created_at_gt_and_lt_are_exclusive_unix_seconds(client, service, read):
    rows = add(service, 10)  # created at T0, T0+10, ..., T0+90
    gt = ids(client.get(f"/invoices?q[created_at_gt]={T0 + 30}", headers=read))
    assert gt == newest_first(rows[4:])
    lt = ids(client.get(f"/invoices?q[created_at_lt]={T0 + 30}", headers=read))
    assert lt == newest_first(rows[:3])
    both = f"/invoices?q[created_at_gt]={T0 + 10}&q[created_at_lt]={T0 + 60}"
    assert ids(client.get(both, headers=read)) == newest_first(rows[2:6])


def test_created_at_filters_combine_with_paging(client, service, read):
    rows = add(service, 40, settled=True)
    window = rows[5:35]  # created_at_gt the 5th row's time, lt the 35th
    query = f"q[created_at_gt]={T0 + 40}&q[created_at_lt]={T0 + 350}&items=4"
    for path in ("/invoices", "/invoices/incoming"):
        assert every_page(client, read, f"{path}?{query}") == newest_first(window)


def test_created_at_filter_that_matches_nothing_is_empty(client, service, read):
    add(service, 3)
    assert ids(client.get(f"/invoices?q[created_at_gt]={T0 + 10**6}", headers=read)) == []


# -- q[before] and q[since] cursors ------------------------------------------------------------


def test_before_returns_rows_older_than_the_cursor(client, service, read):
    rows = add(service, 10)
    got = ids(client.get(f"/invoices?q[before]={rows[6]['identifier']}", headers=read))
    assert got == newest_first(rows[:6])


def test_since_returns_rows_newer_than_the_cursor_newest_first(client, service, read):
    rows = add(service, 10)
    got = ids(client.get(f"/invoices?q[since]={rows[6]['identifier']}", headers=read))
    assert got == newest_first(rows[7:])


def test_since_and_before_together_give_the_rows_between(client, service, read):
    rows = add(service, 10)
    query = f"q[since]={rows[2]['identifier']}&q[before]={rows[8]['identifier']}"
    assert ids(client.get(f"/invoices?{query}", headers=read)) == newest_first(rows[3:8])


@pytest.mark.parametrize("path", ["/invoices", "/invoices/incoming"])
def test_walking_backward_with_before_visits_every_row_exactly_once(client, service, read, path):
    rows = add(service, 47, settled=True)
    seen = ids(client.get(f"{path}?items=10", headers=read))
    while True:
        got = ids(client.get(f"{path}?items=10&q[before]={seen[-1]}", headers=read))
        if not got:
            break
        seen += got
    assert seen == newest_first(rows)


@pytest.mark.parametrize("path", ["/invoices", "/invoices/incoming"])
def test_walking_forward_with_since_visits_every_row_exactly_once(client, service, read, path):
    rows = add(service, 47, settled=True)
    oldest = rows[0]["identifier"]
    seen = [oldest]
    cursor = oldest
    while True:
        got = ids(client.get(f"{path}?items=10&q[since]={cursor}", headers=read))
        if not got:
            break
        seen = got + seen  # each page is newest first, just above the cursor
        cursor = got[0]
    assert seen == newest_first(rows)


def test_since_with_pages_continues_where_the_previous_page_ended(client, service, read):
    rows = add(service, 20)
    since = rows[0]["identifier"]
    page1 = ids(client.get(f"/invoices?items=5&q[since]={since}", headers=read))
    page2 = ids(client.get(f"/invoices?items=5&page=2&q[since]={since}", headers=read))
    assert page2 == ids(client.get(f"/invoices?items=5&q[since]={page1[0]}", headers=read))
    assert page1 == newest_first(rows[1:6])
    assert page2 == newest_first(rows[6:11])


def test_before_combines_with_page_and_created_at(client, service, read):
    rows = add(service, 30)
    cursor = rows[25]["identifier"]
    page2 = ids(client.get(f"/invoices?items=5&page=2&q[before]={cursor}", headers=read))
    assert page2 == newest_first(rows[:25])[5:10]
    query = f"q[before]={cursor}&q[created_at_gt]={T0 + 150}"  # rows 16..24
    assert ids(client.get(f"/invoices?{query}", headers=read)) == newest_first(rows[16:25])


def test_new_rows_do_not_shift_a_before_cursor(client, service, read):
    rows = add(service, 10)
    cursor = rows[5]["identifier"]
    first = ids(client.get(f"/invoices?q[before]={cursor}", headers=read))
    add(service, 5, start=10)
    assert ids(client.get(f"/invoices?q[before]={cursor}", headers=read)) == first


# -- bad queries -------------------------------------------------------------------------------

BAD_QUERIES = [
    ("page=0", "page"),
    ("page=-1", "page"),
    ("page=abc", "page"),
    ("page=1.5", "page"),
    ("items=0", "items"),
    ("items=101", "items"),
    ("items=-5", "items"),
    ("items=ten", "items"),
    ("q[created_at_gt]=yesterday", "q[created_at_gt]"),
    ("q[created_at_gt]=-1", "q[created_at_gt]"),
    ("q[created_at_lt]=1.5", "q[created_at_lt]"),
    ("q[since]=", "q[since]"),
    ("q[before]=" + "x" * 65, "q[before]"),
    ("q[created_at_gt]=" + "9" * 30, "q[created_at_gt]"),
    ("q[created_at_lt]=" + "9" * 20, "q[created_at_lt]"),
    ("page=" + "9" * 25, "page"),
    ("page=99999999999999999", "page"),
    ("q[foo]=1", "q[foo]"),
    ("q[created_at]=1", "q[created_at]"),
]


@pytest.mark.parametrize(("query", "field"), BAD_QUERIES, ids=[q[:30] for q, _ in BAD_QUERIES])
def test_a_malformed_query_gets_400_naming_the_parameter(client, read, query, field):
    for path in ("/invoices", "/invoices/incoming", "/invoices/outgoing"):
        r = client.get(f"{path}?{query}", headers=read)
        assert r.status_code == 400, path
        data = r.get_json()
        assert data["error"] is True and data["code"] == 400
        assert field in data["errors"]
        assert isinstance(data["errors"][field], str) and data["errors"][field]


def test_every_malformed_parameter_is_reported_at_once(client, read):
    r = client.get("/invoices?q[foo]=1&q[bar]=2", headers=read)
    assert {"q[foo]", "q[bar]"} <= set(r.get_json()["errors"])


@pytest.mark.parametrize("field", ["q[since]", "q[before]"])
def test_a_cursor_that_is_not_in_the_list_gets_400(client, service, read, field):
    (open_row,) = add(service, 1)
    for cursor in ("no-such-identifier", open_row["identifier"]):
        r = client.get(f"/invoices/incoming?{field}={cursor}", headers=read)
        assert r.status_code == 400
        assert field in r.get_json()["errors"]
    # the open invoice is in the "all" list, so there it is a valid cursor
    r = client.get(f"/invoices?{field}={open_row['identifier']}", headers=read)
    assert r.status_code == 200


def test_unrelated_query_parameters_are_ignored(client, service, read):
    rows = add(service, 2)
    assert ids(client.get("/invoices?utm_source=x", headers=read)) == newest_first(rows)


def test_listing_a_deep_page_is_fast(client, service, read):
    add(service, 3000)
    start = time.perf_counter()
    for _ in range(10):
        assert len(ids(client.get("/invoices?items=25&page=110", headers=read))) == 25
    assert (time.perf_counter() - start) / 10 < 0.1


# -- boost filters ---------------------------------------------------------------------------


def _keysend_boost(client, admin, boost: dict) -> str:
    r = client.post(
        "/dev/keysend",
        json={"amount_msat": 5000, "custom_records": {"7629169": json.dumps(boost)}},
        headers=admin,
    )
    assert r.status_code == 200, r.get_json()
    return r.get_json()["payment_hash"]


def test_feed_id_finds_boosts_that_name_the_podcast_only_by_its_podcast_index_id(
    client, admin, read
):
    # Fountain, Castamatic, Podverse and Breez keysends carry `feedID` and no `guid`.
    as_text = _keysend_boost(client, admin, {"action": "boost", "feedID": "920666"})
    as_number = _keysend_boost(client, admin, {"action": "stream", "feedID": 920666})
    _keysend_boost(client, admin, {"action": "boost", "feedID": 42})
    _keysend_boost(client, admin, {"action": "boost", "guid": "920666"})
    for path in ("/invoices", "/invoices/incoming"):
        r = client.get(f"{path}?q[feed_id]=920666", headers=read)
        assert r.status_code == 200, r.get_json()
        assert [i["payment_hash"] for i in r.get_json()] == [as_number, as_text], path
    both = client.get("/invoices/incoming?q[feed_id]=920666&q[action]=boost", headers=read)
    assert [i["payment_hash"] for i in both.get_json()] == [as_text]
    none = client.get("/invoices/incoming?q[feed_id]=7", headers=read)
    assert none.status_code == 200 and none.get_json() == []


@pytest.mark.parametrize("value", ["abc", "", "-1", "1.5", "9" * 30])
def test_a_feed_id_that_is_not_a_podcast_index_id_gets_400(client, read, value):
    r = client.get(f"/invoices/incoming?q[feed_id]={value}", headers=read)
    assert r.status_code == 400
    assert "q[feed_id]" in r.get_json()["errors"]
