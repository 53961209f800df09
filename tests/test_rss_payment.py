"""rss::payment boosts: a payment whose comment (or keysend chat message, or
BOLT11 description) says `rss::payment::<action> <url> <message>` gets its
boostagram from the `x-rss-payment` header that `<url>` answers with.

End to end over real HTTP: `lnplugin serve` as a process on the dev node,
a local HTTP server playing the podcast app's payment page, a Lightning
Address paid through LNURL-pay with `lnplugin dev pay`, and the result seen
in `/invoices/incoming`, on a webhook receiver and on the SSE stream. Then
what must not happen: a domain off the list, a loopback address the SSRF
guard was not told to allow, an oversized header; and a receiver that is
down at first is retried until it answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from lnplugin.boostagram import parse_rss_payment, rss_payment_ref
from lnplugin.config import ConfigError, load_settings
from lnplugin.rss_payment import domain_allowed, reference
from tests.e2e import Server, cli, run, scalar, wait_for
from tests.helpers_present import present
from tests.helpers_webhooks import Receiver, SSEClient, free_port

RECORD = {
    "id": "DBBhBwUise1bcfoHRCC3",
    "group": "EoL2Qp52RMOSiF1rmGGs",
    "action": "boost",
    "split": 0.25,
    "message": "Great episode! Loved the part about channels.",
    "app_name": "Fountain",
    "app_version": "1.3.10",
    "sender_id": "IIaS9X2JuH75yvrRcFoL",
    "sender_name": "oscar@fountain.fm",
    "recipient_name": "alice@pod.example",
    "value_msat": "21000",
    "value_msat_total": 84000,
    "timestamp": "2025-11-05T15:09:10.174Z",
    "position": 120,
    "feed_guid": "917393e3-1b1e-5cef-ace4-edaa54e1f810",
    "feed_title": "Alice's Lab Pod",
    "item_guid": "ep-42",
    "item_title": "Episode 42: Channels",
    "remote_feed_guid": "",
}
RETRIES = ",".join(["1"] * 20)  # a down receiver is retried every second (with jitter)


# -- the parts that need no network ------------------------------------------------


def test_a_comment_reference_is_read_from_the_start_of_the_text() -> None:
    ref = rss_payment_ref("rss::payment::boost https://fountain.fm/p?payment=x Great episode!")
    assert ref is not None
    assert (ref.action, ref.url, ref.message) == (
        "boost",
        "https://fountain.fm/p?payment=x",
        "Great episode!",
    )
    assert rss_payment_ref("rss::payment::stream https://a.example/x") == type(ref)(
        "stream", "https://a.example/x", None
    )
    for text in (
        None,
        "",
        "Great episode!",
        "see rss::payment::boost https://a.example/x",  # not at the start
        "rss::payment::boost ftp://a.example/x hi",  # not http(s)
        "rss::payment::boost",  # no URL
        "RSS::PAYMENT::boost https://a.example/x",  # the prefix is lower-case
    ):
        assert rss_payment_ref(text) is None, text


def test_reference_looks_at_comment_then_keysend_message_then_description() -> None:
    invoice = {
        "comment": "rss::payment::boost https://a.example/1 from the comment",
        "keysend_message": "rss::payment::boost https://b.example/2 chat",
        "description": "rss::payment::stream https://c.example/3",
    }
    assert present(reference(invoice)).url == "https://a.example/1"
    assert present(reference({**invoice, "comment": "hi"})).url == "https://b.example/2"
    assert present(reference({"description": invoice["description"]})).action == "stream"
    assert reference({"comment": None, "description": "Coffee"}) is None


def test_the_header_becomes_the_boostagram_in_blip10_names() -> None:
    header = urllib.parse.quote(json.dumps(RECORD))
    boost = parse_rss_payment(header)
    assert boost is not None
    assert boost["guid"] == RECORD["feed_guid"] and "feed_guid" not in boost
    assert boost["podcast"] == "Alice's Lab Pod" and boost["episode"] == "Episode 42: Channels"
    assert boost["episode_guid"] == "ep-42" and boost["ts"] == 120
    assert boost["uuid"] == RECORD["id"] and boost["boost_uuid"] == RECORD["group"]
    assert boost["name"] == "alice@pod.example"
    assert boost["value_msat"] == 21000  # a digit string becomes a number, as for TLV
    assert boost["split"] == 0.25 and boost["timestamp"] == RECORD["timestamp"]  # kept as sent
    assert boost["sender_name"] == "oscar@fountain.fm" and boost["app_name"] == "Fountain"


def test_the_header_is_parsed_leniently() -> None:
    ref = rss_payment_ref("rss::payment::boost https://a.example/x Nice show")
    # A bLIP-10 name sent as well wins over the renamed one.
    both = parse_rss_payment(urllib.parse.quote(json.dumps({"feed_guid": "a", "guid": "b"})))
    assert both == {"guid": "b"}
    # The comment fills in what the header lacks, never what it has.
    assert parse_rss_payment(urllib.parse.quote("{}"), ref) == {
        "action": "boost",
        "message": "Nice show",
    }
    assert present(parse_rss_payment(json.dumps({"message": "full"}), ref))["message"] == "full"
    for bad in ("", "%7B", urllib.parse.quote("[1, 2]"), "not json", "[" * 100_000):
        assert parse_rss_payment(bad) is None, bad[:20]


def test_domain_allow_list_matches_the_host_and_its_subdomains() -> None:
    domains = ("fountain.fm", "127.0.0.1")
    assert domain_allowed("https://fountain.fm/p", domains)
    assert domain_allowed("https://api.FOUNTAIN.fm./p", domains)
    assert domain_allowed("http://127.0.0.1:8000/x", domains)
    assert not domain_allowed("https://evilfountain.fm/p", domains)
    assert not domain_allowed("https://fountain.fm.evil.example/p", domains)
    assert not domain_allowed("https://fountain.fm/p", ())
    assert not domain_allowed("http://[::1/x", domains)


def test_the_domain_setting_is_validated_and_off_by_default() -> None:
    assert load_settings({}, environ={}).rss_payment_domain == ()
    given = load_settings({"rss_payment_domain": ("Fountain.FM", "pod.example,[::1]")}, environ={})
    assert given.rss_payment_domain == ("fountain.fm", "pod.example", "::1")
    for bad in ("https://fountain.fm", "fountain.fm/path", "a b"):
        with pytest.raises(ConfigError, match="rss_payment_domain"):
            load_settings({"rss_payment_domain": (bad,)}, environ={})


# -- a podcast app's payment page ----------------------------------------------------


@dataclass
class PaymentPages:
    """Answers GET with an `x-rss-payment` header per path (`headers`), or 404.
    Every request is recorded; `start` can be called late, on a port chosen
    early, to play a receiver that is down at first."""

    port: int = field(default_factory=free_port)
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def start(self) -> PaymentPages:
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                pages.requests.append(self.path)
                header = pages.headers.get(self.path.split("?")[0])
                self.send_response(200 if header is not None else 404)
                if header is not None:
                    self.send_header("x-rss-payment", header)
                body = b"<html><body>Episode page</body></html>"
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def serve(self, path: str, record: dict[str, Any]) -> str:
        self.headers[path] = urllib.parse.quote(json.dumps(record))
        return self.url(path) + "?payment=DBBhBwUise1bcfoHRCC3"

    def close(self) -> None:
        if hasattr(self, "_server"):
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture(scope="module")
def pages() -> Iterator[PaymentPages]:
    served = PaymentPages().start()
    yield served
    served.close()


def _serve(data: Path, *args: str) -> Server:
    port = free_port()
    return Server(data, "--public-url", f"http://127.0.0.1:{port}", "--port", str(port), *args)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = (
        "--rss-payment-domain",
        "127.0.0.1",
        "--webhook-allow",
        "127.0.0.0/8",  # the test's servers are on loopback, which the guard refuses otherwise
        "--rss-payment-retry-schedule",
        RETRIES,
        "--rss-payment-max-bytes",
        "2048",
        "--webhook-retry-schedule",
        "1",
        "--rate-limit",
        "1000/minute",
        "--rate-limit-callback",
        "1000/minute",
    )
    with _serve(tmp_path_factory.mktemp("rss") / "data", *args) as srv:
        yield srv


def _address(server: Server, username: str) -> None:
    reply = server.request(
        "POST",
        "/lightning_addresses",
        json={
            "username": username,
            "description": f"Boosts for {username}'s podcast",
            "min_sendable_msat": 1000,
            "max_sendable_msat": 100_000_000,
            "comment_allowed": 255,
        },
    )
    assert reply.status_code == 201, reply.text


def _boost(server: Server, username: str, comment: str, amount: int = 21_000) -> str:
    """Pay `username` the way a podcast app does: LNURL-pay with a comment."""
    pay = requests.get(f"{server.url}/.well-known/lnurlp/{username}", timeout=10).json()
    assert pay["commentAllowed"] >= len(comment)
    reply = requests.get(
        pay["callback"], params={"amount": str(amount), "comment": comment}, timeout=10
    )
    assert reply.status_code == 200, reply.text
    paid = json.loads(cli(server.data_dir, "dev", "pay", reply.json()["pr"]))
    assert paid["state"] == "SETTLED"
    return str(paid["payment_hash"])


def _row(server: Server, payment_hash: str) -> dict[str, Any] | None:
    """The rss_payments row of an incoming payment, once there is one."""
    with_state = scalar(
        server.data_dir,
        "SELECT json_object('state', r.state, 'attempts', r.attempts, 'error', r.last_error, "
        "'header', r.header, 'url', r.url) FROM rss_payments r JOIN invoices i "
        "ON i.id = r.invoice_id WHERE i.payment_hash = ? AND i.type = 'incoming'",
        payment_hash,
    )
    return json.loads(with_state[0]) if with_state else None


def _final(server: Server, payment_hash: str) -> dict[str, Any]:
    return wait_for(
        lambda: (row := _row(server, payment_hash)) and row["state"] != "pending" and row,
        "the rss::payment fetch to reach a final state",
    )


def _invoice(server: Server, payment_hash: str) -> dict[str, Any]:
    return dict(server.request("GET", f"/invoices/{payment_hash}").json())


def test_a_podcaster_sees_an_lnurl_boost_as_a_boostagram(
    server: Server, pages: PaymentPages
) -> None:
    _address(server, "alice")
    hook = Receiver()
    endpoint = server.request(
        "POST",
        "/webhook_endpoints",
        json={"url": hook.url(), "filter_types": ["invoice.updated"]},
    )
    assert endpoint.status_code == 201, endpoint.text
    stream = SSEClient(f"{server.url}/events", str(server.token))
    assert stream.ok
    try:
        url = pages.serve("/boost/1", RECORD)
        payment_hash = _boost(server, "alice", f"rss::payment::boost {url} Great episode!")

        row = _final(server, payment_hash)
        assert row["state"] == "fetched" and row["error"] is None
        assert json.loads(urllib.parse.unquote(row["header"])) == RECORD  # the raw header, kept
        invoice = _invoice(server, payment_hash)
        boost = invoice["boostagram"]
        assert invoice["comment"] == f"rss::payment::boost {url} Great episode!"
        assert invoice["lightning_address"] == "alice"
        assert boost["sender_name"] == "oscar@fountain.fm"
        assert boost["podcast"] == "Alice's Lab Pod" and boost["episode"] == "Episode 42: Channels"
        assert boost["guid"] == RECORD["feed_guid"] and boost["episode_guid"] == "ep-42"
        assert boost["message"] == RECORD["message"] and boost["value_msat_total"] == 84000

        # The boost lists, by each filter.
        for params in (
            {"q[boostagram]": "true"},
            {"q[feed_guid]": RECORD["feed_guid"]},
            {"q[item_guid]": "ep-42"},
            {"q[action]": "boost", "q[lightning_address]": "alice"},
        ):
            listed = server.request("GET", "/invoices/incoming", params=params).json()
            assert payment_hash in [i["payment_hash"] for i in listed], params
        for params in ({"q[boostagram]": "false"}, {"q[item_guid]": "ep-43"}):
            listed = server.request("GET", "/invoices/incoming", params=params).json()
            assert payment_hash not in [i["payment_hash"] for i in listed], params
        bad = server.request("GET", "/invoices/incoming", params={"q[boostagram]": "yes"})
        assert bad.status_code == 400 and "q[boostagram]" in bad.json()["errors"]

        # invoice.updated on the webhook and on the SSE stream, with the boostagram.
        [delivered] = wait_for(
            lambda: hook.of_type("invoice.updated", payment_hash), "the invoice.updated webhook"
        )
        assert delivered.json["data"]["boostagram"]["episode_guid"] == "ep-42"
        for event in stream.events():
            data = event.json["data"]
            if event.event == "invoice.updated" and data["payment_hash"] == payment_hash:
                assert data["boostagram"]["sender_name"] == "oscar@fountain.fm"
                break
        assert pages.requests.count("/boost/1?payment=DBBhBwUise1bcfoHRCC3") == 1
    finally:
        stream.close()
        hook.close()


def test_a_bolt11_description_or_a_keysend_chat_message_also_points_at_the_record(
    server: Server, pages: PaymentPages
) -> None:
    url = pages.serve("/stream/2", {**RECORD, "action": "stream", "item_guid": "ep-2"})
    created = server.request(
        "POST", "/invoices", json={"amount": 5, "description": f"rss::payment::stream {url}"}
    )
    assert created.status_code == 201, created.text
    by_invoice = created.json()["payment_hash"]
    cli(server.data_dir, "dev", "pay", created.json()["payment_request"])

    chat = pages.serve("/boost/3", {**RECORD, "item_guid": "ep-3"})
    sent = json.loads(
        cli(
            server.data_dir,
            "dev",
            "keysend",
            "--amount-msat",
            "3000",
            "--record",
            f"34349334=rss::payment::boost {chat} hi",
        )
    )
    for payment_hash, guid, action in (
        (by_invoice, "ep-2", "stream"),
        (sent["payment_hash"], "ep-3", "boost"),
    ):
        assert _final(server, payment_hash)["state"] == "fetched"
        boost = _invoice(server, payment_hash)["boostagram"]
        assert (boost["episode_guid"], boost["action"]) == (guid, action)
    listed = server.request("GET", "/invoices/incoming", params={"q[action]": "stream"}).json()
    assert by_invoice in [i["payment_hash"] for i in listed]
    assert sent["payment_hash"] not in [i["payment_hash"] for i in listed]


def test_a_record_sent_unencoded_keeps_its_unicode(server: Server, pages: PaymentPages) -> None:
    """A record sent as plain JSON rather than URI-encoded (it is taken either
    way) arrives as the UTF-8 bytes the app wrote; the message must read as
    written, not as each byte taken for a Latin-1 character (`Ã©`)."""
    _address(server, "unicode")
    record = {**RECORD, "message": "Très bien 🚀 日本語", "sender_name": "Zoë"}
    sent = json.dumps(record, ensure_ascii=False).encode("utf-8")
    # send_header writes a str as Latin-1: this str is those UTF-8 bytes, one per character.
    pages.headers["/raw/1"] = sent.decode("latin-1")
    payment_hash = _boost(server, "unicode", f"rss::payment::boost {pages.url('/raw/1')} Très")
    assert _final(server, payment_hash)["state"] == "fetched"
    boost = _invoice(server, payment_hash)["boostagram"]
    assert boost["message"] == "Très bien 🚀 日本語" and boost["sender_name"] == "Zoë"


def test_a_domain_not_on_the_list_is_never_fetched(server: Server, pages: PaymentPages) -> None:
    _address(server, "bob")
    pages.headers["/elsewhere"] = urllib.parse.quote(json.dumps(RECORD))
    url = pages.url("/elsewhere", host="localhost")  # the same server, under a name not listed
    payment_hash = _boost(server, "bob", f"rss::payment::boost {url} hello")
    row = _final(server, payment_hash)
    assert row["state"] == "refused" and row["attempts"] == 0
    assert "localhost is not an --rss-payment-domain" in row["error"]
    assert not any(path.startswith("/elsewhere") for path in pages.requests)
    assert _invoice(server, payment_hash)["boostagram"] is None
    metrics = server.request("GET", "/metrics").text
    refused = [line for line in metrics.splitlines() if line.startswith("lnplugin_rss_payments{")]
    assert any('state="refused"' in line and not line.endswith(" 0.0") for line in refused)


def test_a_receiver_that_is_down_is_retried_until_it_answers(server: Server) -> None:
    _address(server, "carol")
    late = PaymentPages()  # its port is chosen, but nothing listens yet
    late.headers["/late"] = urllib.parse.quote(json.dumps({**RECORD, "item_guid": "ep-late"}))
    try:
        payment_hash = _boost(server, "carol", f"rss::payment::boost {late.url('/late')} hi")
        failed = wait_for(
            lambda: (row := _row(server, payment_hash)) and row["attempts"] >= 1 and row,
            "a first failed attempt",
        )
        assert failed["state"] == "pending" and "Connection refused" in failed["error"]
        late.start()
        row = _final(server, payment_hash)
        assert row["state"] == "fetched" and row["attempts"] >= 2
        assert _invoice(server, payment_hash)["boostagram"]["episode_guid"] == "ep-late"
    finally:
        late.close()


def test_an_oversized_header_is_refused_and_not_retried(
    server: Server, pages: PaymentPages
) -> None:
    _address(server, "dave")
    url = pages.serve("/big", {**RECORD, "message": "x" * 4000})  # over --rss-payment-max-bytes
    payment_hash = _boost(server, "dave", f"rss::payment::boost {url} big")
    row = _final(server, payment_hash)
    assert row["state"] == "failed" and row["attempts"] == 1
    assert "larger than 2048 bytes" in row["error"] and row["header"] is None
    assert _invoice(server, payment_hash)["boostagram"] is None
    # Past what Python's HTTP client reads at all (a 64 KiB line): the app's
    # answer too, so not retried either.
    pages.headers["/huge"] = "x" * 70_000
    huge = _boost(server, "dave", f"rss::payment::boost {pages.url('/huge')} big")
    row = _final(server, huge)
    assert row["state"] == "failed" and row["attempts"] == 1
    assert row["error"].startswith("LineTooLong") and row["header"] is None


def test_a_missing_or_unparsable_header_or_an_unusable_url_fails_without_retries(
    server: Server, pages: PaymentPages
) -> None:
    _address(server, "erin")
    payment_hash = _boost(server, "erin", f"rss::payment::boost {pages.url('/missing')} hi")
    row = _final(server, payment_hash)
    assert row["state"] == "failed" and row["attempts"] == 1 and row["error"] == "HTTP 404"
    pages.headers["/garbled"] = urllib.parse.quote("[1, 2]")  # JSON, but not an object
    garbled = _boost(server, "erin", f"rss::payment::boost {pages.url('/garbled')} hi")
    row = _final(server, garbled)
    assert row["state"] == "failed" and row["attempts"] == 1
    assert "not URI-encoded JSON holding an object" in row["error"]
    assert row["header"] == urllib.parse.quote("[1, 2]")  # kept, to see what was sent
    assert _invoice(server, garbled)["boostagram"] is None
    bad_port = _boost(server, "erin", "rss::payment::boost http://127.0.0.1:99999/x hi")
    row = _final(server, bad_port)
    assert row["state"] == "failed" and row["attempts"] == 1
    assert row["error"].startswith("unusable URL: ")


def test_loopback_is_refused_unless_the_operator_allows_it(
    tmp_path: Path, pages: PaymentPages
) -> None:
    # The domain is listed, but no --webhook-allow: the SSRF guard refuses loopback.
    with _serve(tmp_path / "data", "--rss-payment-domain", "127.0.0.1") as srv:
        _address(srv, "frank")
        url = pages.serve("/guarded", RECORD)
        payment_hash = _boost(srv, "frank", f"rss::payment::boost {url} hi")
        row = _final(srv, payment_hash)
    assert row["state"] == "refused" and row["attempts"] == 1
    assert "loopback" in row["error"]
    assert not any(path.startswith("/guarded") for path in pages.requests)


def test_the_readme_rss_walkthrough_works_as_shown(tmp_path: Path) -> None:
    """The README's ```sh rss-walkthrough blocks, after the main walk-through's
    setup, against a server started as the README says (see
    tests/test_readme_walkthrough.py for how output is matched)."""
    from tests import test_readme_walkthrough as walk

    setup = walk.COMMANDS[:3]
    assert [c.text.split()[0] for c in setup] == [".", "export", "field()"]
    commands = walk.parse_commands(walk.README, "rss-walkthrough")
    assert commands, "README.md has no ```sh rss-walkthrough blocks"
    port = free_port()
    shown = f"--public-url http://127.0.0.1:8080 {' '.join(ARGS_SHOWN)}"
    assert f'make run ARGS="{shown}"' in walk.README
    walked = walk.run_walkthrough(
        tmp_path,
        setup + commands,
        ("--port", str(port), "--public-url", f"http://127.0.0.1:{port}", *ARGS_SHOWN),
    )
    for n in range(len(walked)):
        walk.test_each_command_works_and_prints_what_the_readme_shows(walked, n)


ARGS_SHOWN = ("--rss-payment-domain", "127.0.0.1", "--webhook-allow", "127.0.0.0/8")


def test_a_pending_fetch_survives_a_restart(tmp_path: Path) -> None:
    """The schedule is in the store: a fetch that failed before a restart is
    made by the next process, from the row it left behind."""
    data = tmp_path / "data"
    late = PaymentPages()
    late.headers["/restart"] = urllib.parse.quote(json.dumps({**RECORD, "item_guid": "ep-r"}))
    args = ("--rss-payment-domain", "127.0.0.1", "--webhook-allow", "127.0.0.0/8")
    try:
        # Ten retries 3 s apart: the first process has 30 s to stop before its
        # schedule runs out (1 s apart ran out on a loaded CI machine), and
        # the second finds the row due within 3 s.
        with _serve(data, *args, "--rss-payment-retry-schedule", ",".join(["3"] * 10)) as first:
            _address(first, "gina")
            payment_hash = _boost(first, "gina", f"rss::payment::boost {late.url('/restart')} hi")
            wait_for(
                lambda: (row := _row(first, payment_hash)) and row["attempts"] >= 1,
                "a first failed attempt",
            )
        assert present(_row(first, payment_hash))["state"] == "pending"
        late.start()
        with _serve(data, *args) as second:
            second.token = first.token  # printed only on a fresh data dir
            row = _final(second, payment_hash)
            assert row["state"] == "fetched"
            assert _invoice(second, payment_hash)["boostagram"]["episode_guid"] == "ep-r"
        assert late.requests == ["/restart"]
    finally:
        late.close()


def test_fetches_run_side_by_side_so_a_slow_app_holds_up_no_other(tmp_path: Path) -> None:
    """Two record pages that each answer only once the other has been asked:
    fetched one at a time, the first would wait until its page gave up (a 503,
    then retries); fetched side by side, both answer at the first attempt."""
    gate = threading.Barrier(2, timeout=50)
    record = urllib.parse.quote(json.dumps(RECORD))
    asked: list[str] = []

    class Gated(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            try:
                gate.wait()
                status = 200
            except threading.BrokenBarrierError:
                status = 503
            self.send_response(status)
            if status == 200:
                self.send_header("x-rss-payment", record)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    pages = ThreadingHTTPServer(("127.0.0.1", port), Gated)
    pages.daemon_threads = True
    threading.Thread(target=pages.serve_forever, daemon=True).start()
    args = ("--rss-payment-domain", "127.0.0.1", "--webhook-allow", "127.0.0.0/8")
    try:
        with _serve(tmp_path / "data", *args, "--rss-payment-timeout", "60") as srv:
            _address(srv, "hana")
            first = _boost(srv, "hana", f"rss::payment::boost http://127.0.0.1:{port}/a hi")
            second = _boost(srv, "hana", f"rss::payment::boost http://127.0.0.1:{port}/b hi")
            for payment_hash in (first, second):
                row = _final(srv, payment_hash)
                assert row["state"] == "fetched" and row["attempts"] == 1, row
                assert _invoice(srv, payment_hash)["boostagram"]["episode_guid"] == "ep-42"
        assert sorted(asked) == ["/a", "/b"]
    finally:
        pages.shutdown()
        pages.server_close()


def test_boosts_refused_for_their_domain_are_fetched_once_it_is_listed(
    tmp_path: Path, pages: PaymentPages
) -> None:
    """No backfill by itself: a boost that settled while its domain was not
    listed stays refused when the domain is added; `lnplugin rss refetch`
    queues it (and leaves the ones on still unlisted domains alone)."""
    data = tmp_path / "data"
    url = pages.serve("/backfill", {**RECORD, "item_guid": "ep-backfill"})
    with _serve(data) as first:  # no --rss-payment-domain: nothing is fetched
        _address(first, "ivan")
        early = _boost(first, "ivan", f"rss::payment::boost {url} hi")
        elsewhere = _boost(first, "ivan", "rss::payment::boost https://elsewhere.example/x hi")
        for payment_hash in (early, elsewhere):
            row = _final(first, payment_hash)
            assert row["state"] == "refused" and row["attempts"] == 0
            assert "is not an --rss-payment-domain" in row["error"]
        token = first.token
    args = ("--rss-payment-domain", "127.0.0.1", "--webhook-allow", "127.0.0.0/8")
    with _serve(data, *args) as second:
        second.token = token
        # Listing the domain does not reach back by itself...
        assert present(_row(second, early))["state"] == "refused"
        refused = run(data, "rss", "refetch")
        assert refused.returncode == 2 and "--rss-payment-domain" in refused.stderr
        # ...the command does, through the running server's worker.
        queued = cli(data, "rss", "refetch", "--rss-payment-domain", "127.0.0.1")
        assert queued.strip() == (
            "1 boost record(s) queued for fetching; 1 on domains not listed left as they are"
        )
        row = _final(second, early)
        assert row["state"] == "fetched" and row["attempts"] == 1
        assert _invoice(second, early)["boostagram"]["episode_guid"] == "ep-backfill"
        assert present(_row(second, elsewhere))["state"] == "refused"
        again = cli(data, "rss", "refetch", "--rss-payment-domain", "127.0.0.1")
        assert again.startswith("0 boost record(s) queued")
    assert pages.requests.count("/backfill?payment=DBBhBwUise1bcfoHRCC3") == 1


SENDER = Path(__file__).parents[1] / "contrib" / "rss_payment_sender.py"


def _send(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SENDER), *args, "--amount-msat", "21000", "--wait", "5"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_the_sender_says_in_one_line_that_nothing_answers() -> None:
    """contrib/rss_payment_sender.py, as the README runs it, with lnplugin not
    running: one line, not urllib's traceback."""
    port = free_port()
    out = _send(
        f"podcast@127.0.0.1:{port}", "--dev-pay", f"http://127.0.0.1:{port}", "--token", "t"
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    [line] = out.stderr.splitlines()
    assert f"127.0.0.1:{port}" in line and "Connection refused" in line, line


def test_the_sender_says_what_dev_pay_answered_to_a_bad_token(server: Server) -> None:
    _address(server, "badtoken")
    host = urllib.parse.urlsplit(server.url).netloc
    out = _send(f"badtoken@{host}", "--dev-pay", server.url, "--token", "lnp_not-a-token")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    [line] = out.stderr.splitlines()
    assert "/dev/pay" in line and "Invalid or revoked token" in line, line
