"""Every route, generated input, a real server: no 5xx, errors in the Alby shape
(LUD-06's `{"status": "ERROR", "reason"}` on the public LNURL routes), nothing
written on a 4xx.

Routes come from the Flask app's url_map (dev node, so /dev/* is included),
so a new route is fuzzed without touching this file. Each route gets
generated path arguments (known good ones, hex-like and arbitrary text),
query strings (every parameter name the API reads, plus others, with
integers, other scripts' digits, lone surrogates as raw bytes), headers
(admin, read-only, bad or no token; Idempotency-Key, Last-Event-ID,
Content-Type, with raw non-ASCII bytes) and bodies (objects built from every
schema's field names with values of every JSON type, lone surrogates
included, plus non-objects and bytes that are not JSON), sent over HTTP to
`lnplugin serve` running as a process. After each 4xx the store's row counts
(invoices, events, idempotency keys, webhook endpoints, tokens) must be what
they were before it.

Also: a request line with raw non-ASCII bytes, which the server's HTTP
parser (uvicorn's httptools) refuses before the app runs, sent over a raw
socket. Such requests get uvicorn's own plain-text 400 ("Invalid HTTP
request received."): uvicorn documents no hook for that answer, and lnplugin
relies on no server internals (docs/streaming.md). They reach no route, so
nothing is written; the tests check that, and that the answer is exactly
the parser's refusal and not an error of the app.

Example count: env LNPLUGIN_HYPOTHESIS_EXAMPLES (default 100 per route, for
22 routes; about 20 s).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lnplugin.api import create_app
from lnplugin.api.schemas import Body
from lnplugin.config import load_settings
from lnplugin.service import Service
from tests.e2e import Server, cli, db
from tests.helpers_webhooks import free_port

EXAMPLES = int(os.environ.get("LNPLUGIN_HYPOTHESIS_EXAMPLES", "100"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# What a 4xx must leave alone. Expiry events are left out: the expiry sweep
# appends them on its own schedule, for invoices an earlier example created.
COUNTS = {
    "invoices": "SELECT COUNT(*) FROM invoices",
    "events": "SELECT COUNT(*) FROM events WHERE type != 'invoice.incoming.expired'",
    "idempotency_keys": "SELECT COUNT(*) FROM idempotency_keys",
    "webhook_endpoints": "SELECT COUNT(*) FROM webhook_endpoints",
    "tokens": "SELECT COUNT(*) FROM tokens",
    "lightning_addresses": "SELECT COUNT(*) FROM lightning_addresses",
}
# Routes payers' wallets call: their errors have LUD-06's shape, not Alby's.
PUBLIC_LNURL = re.compile(r"/(\.well-known/(lnurlp|keysend)|lnurlp)/")
CHECKOUT_PAGES = re.compile(r"/pay/")


def _routes() -> list[tuple[str, str]]:
    """(method, rule) for every route of the dev-node app, read from its url_map."""
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-routes-"))
    try:
        service = Service.build(load_settings({"data_dir": str(tmp), "node": "dev"}, environ={}))
        try:
            app = create_app(service)
        finally:
            service.store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sorted(
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    )


ROUTES = _routes()


def _field_names() -> list[str]:
    """Every field of every request body schema (subclasses of `Body`)."""
    names: set[str] = set()
    todo = list(Body.__subclasses__())
    while todo:
        schema = todo.pop()
        todo.extend(schema.__subclasses__())
        names.update(schema.model_fields)
    return sorted(names)


FIELDS = _field_names()
QUERY_NAMES = ["items", "page", "last_event_id", "q[created_at_gt]", "q[created_at_lt]"]
QUERY_NAMES += ["q[since]", "q[before]", "q[unknown]", "q[]", "q", "x"]
QUERY_NAMES += ["q[lightning_address]", "amount", "comment", "payerdata"]

# -- strategies -----------------------------------------------------------------------

# Not integers, though isdigit() or int() may say otherwise.
ODD_INTEGERS = ["²", "\u0663", "9" * 5000, "1_0", " 1", "+1", "1.0", "-0", "0x1"]
LONE = st.sampled_from(["\ud800", "\udfff", "\udc80", "a\ud83d", "\ude00b"])
# Text with the odd characters that broke routes before: lone surrogates,
# other scripts' digits and superscripts, NUL, and plain text around them.
DIGITS = "0123456789²³¹\u0663\u0664\u06f5\u0967\u0e51-_ .e+"  # and other scripts' digits
WITH_LONE = st.builds(lambda a, s, b: a + s + b, st.text(max_size=5), LONE, st.text(max_size=5))
ODD_TEXT = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.sampled_from(DIGITS), max_size=12),
    WITH_LONE,
    st.sampled_from(["", "\x00", "9" * 5000, "1e999", "-1", "0", "hex:zz", "hex:0a", "²"]),
)
INTS = st.one_of(
    st.integers(-3, 3),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63, 2**64, 21_000_000 * 10**11, 10**15 + 1]),
)
SCALARS = st.one_of(st.none(), st.booleans(), INTS, st.floats(), ODD_TEXT)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(ODD_TEXT, inner, max_size=3)
    ),
    max_leaves=8,
)
# Keys a route reads, with values it might accept (a custom record type, an
# event type, a URL, a hash) or of any type.
FIELD_VALUES = st.one_of(
    JSON_VALUES,
    LONE,
    st.sampled_from(
        [
            "696969",
            "7629169",
            "invoice.incoming.settled",
            "https://example.com/hook",
            "http://127.0.0.1:1/",
            "ab" * 32,
            "btc",
        ]
    ),
    st.dictionaries(st.sampled_from(["696969", "7629169", "1", "²", "٣"]), ODD_TEXT, max_size=2),
    st.lists(st.sampled_from(["invoice.incoming.settled", "nope"]), max_size=2),
)
# Bodies some route accepts. Generated bodies are these with one value
# replaced (however deep) or with generated fields merged in, so the checks
# behind the first refusal are reached too.
EVENT = "invoice.incoming.settled"
SEEDS: list[dict[str, Any]] = [
    {"amount": 1, "description": "d", "comment": "c", "payer_name": "n", "metadata": {"a": ["b"]}},
    {"amount_msat": 1000, "memo": "m", "webhook": "https://example.com/", "expiry": 60},
    {"amount_msat": 1000, "custom_records": {"696969": "x", "7629169": '{"feedID": "1"}'}},
    {"url": "https://example.com/", "description": "d", "filter_types": [EVENT]},
    {"invoice": "lnbcrt1"},
    {"payment_hash": "ab" * 32, "amount_msat": 1},
    {
        "username": "fuzzed",
        "min_sendable_msat": 1000,
        "payer_data": {"name": {"mandatory": True}},
        "image": "data:image/png;base64,AAA=",
        "keysend_custom_key": 696970,
    },
]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into `value` (leaves and containers)."""
    children: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    return [path] + [p for key, item in children for p in _paths(item, (*path, key))]


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(value[path[0]], path[1:], new)
    return copy


@st.composite
def mutated(draw: st.DrawFn, seeds: list[dict[str, Any]]) -> dict[str, Any]:
    seed = draw(st.sampled_from(seeds))
    # Hypothesis draws the first choices most: deepest paths first, deletion last.
    path = draw(st.sampled_from(sorted((p for p in _paths(seed) if p), key=len, reverse=True)))
    if draw(st.integers(0, 9)) == 9:  # or leave a field out
        return {k: v for k, v in seed.items() if k != path[0]}
    new = st.one_of(WITH_LONE, st.sampled_from(ODD_INTEGERS), ODD_TEXT, FIELD_VALUES)
    return _replace(seed, path, draw(new))


MERGED = st.builds(
    lambda seed, extra: {**seed, **extra},
    st.sampled_from([{}, *SEEDS]),
    st.dictionaries(st.one_of(st.sampled_from(FIELDS), ODD_TEXT), FIELD_VALUES, max_size=4),
)


@st.composite
def bodies(draw: st.DrawFn, seeds: list[dict[str, Any]]) -> bytes | None:
    """A JSON body (lone surrogates written as escapes), mostly one of the
    route's own `seeds` with one value changed."""
    kind = draw(st.sampled_from([*["seed"] * 5, "merged", "json", "bytes", "none"]))
    if kind == "none":
        return None
    if kind in ("seed", "merged"):
        return json.dumps(draw(mutated(seeds) if kind == "seed" else MERGED)).encode()
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    return draw(st.binary(max_size=64))


def _encode(text: str) -> str:
    """Percent-encode for a URL; lone surrogates become the bytes UTF-8 would
    give them (ED A0 80), which no valid UTF-8 holds."""
    return quote(text, safe="", errors="surrogatepass")


@st.composite
def queries(draw: st.DrawFn) -> str:
    names = st.one_of(st.sampled_from(QUERY_NAMES), ODD_TEXT)
    values = st.one_of(ODD_TEXT, INTS.map(str), st.sampled_from(ODD_INTEGERS))
    pairs = draw(st.lists(st.tuples(names, values), max_size=4))
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in pairs)


HEADER_TEXT = st.one_of(
    st.sampled_from(ODD_INTEGERS).map(lambda t: t.strip().encode("utf-8")),
    # Any bytes a header value can carry: no CR or LF, no leading whitespace.
    st.binary(max_size=20).map(
        lambda b: b.replace(b"\r", b"").replace(b"\n", b"").lstrip(b" \t\x0b\x0c")
    ),
    st.sampled_from([b"", b"7", b"-1", b"\xb2", b"9" * 5000, "٣".encode()]),
)


# -- the server -----------------------------------------------------------------------


class Target:
    """The running server, its tokens and ids of things that exist."""

    def __init__(self, server: Server, data_dir: Path) -> None:
        self.server = server
        self.data_dir = data_dir
        self.session = requests.Session()
        assert server.token
        self.admin = server.token
        self.reader = cli(data_dir, "token", "create", "--scope", "invoices:read").split()[-1]
        settled = self.call("POST", "/invoices", body=b'{"amount": 5}').json()
        open_invoice = self.call("POST", "/invoices", body=b'{"amount": 7}').json()
        pay = json.dumps({"payment_hash": settled["payment_hash"]}).encode()
        paid = self.call("POST", "/dev/pay", body=pay)
        assert paid.status_code == 200, paid.text
        endpoint = self.call(
            "POST",
            "/webhook_endpoints",
            body=json.dumps(
                {"url": "https://example.invalid/", "filter_types": ["invoice.incoming.settled"]}
            ).encode(),
        )
        assert endpoint.status_code == 201, endpoint.text
        address = self.call("POST", "/lightning_addresses", body=b'{"username": "fuzz"}')
        assert address.status_code == 201, address.text
        event = db(data_dir).execute("SELECT event_id FROM events LIMIT 1").fetchone()
        self.known = {
            "payment_hash": [settled["payment_hash"], open_invoice["payment_hash"]],
            "endpoint_id": [endpoint.json()["id"]],
            "event_id": [event[0] if event else "evt_x"],
            "invoice": [open_invoice["payment_request"]],
            "username": ["fuzz"],
        }

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, Any] | None = None,
    ) -> requests.Response:
        sent = {"Authorization": f"Bearer {self.admin}"} if headers is None else headers
        sent = {k: v for k, v in sent.items() if v is not None}  # None: not sent
        if body is not None:
            sent.setdefault("Content-Type", "application/json")
        response = self.session.request(
            method, self.server.url + path, data=body, headers=sent, timeout=30, stream=True
        )
        if response.headers.get("Content-Type", "").startswith("text/event-stream"):
            response.close()  # a live stream: the status and headers are all there is to see
        else:
            response.content  # noqa: B018 - read the whole body now
        return response

    def seeds_for(self, method: str, rule: str) -> list[dict[str, Any]]:
        """The `SEEDS` this route does not refuse as a bad request (all, if it refuses all)."""
        path = PLACEHOLDER.sub(lambda m: self.known.get(m[1], ["x"])[0], rule)
        taken = [
            seed
            for seed in SEEDS
            if self.call(method, path, json.dumps(seed).encode()).status_code != 400
        ]
        return taken or SEEDS

    def counts(self) -> dict[str, int]:
        conn = db(self.data_dir)
        try:
            return {name: conn.execute(sql).fetchone()[0] for name, sql in COUNTS.items()}
        finally:
            conn.close()


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    tmp = Path(tempfile.mkdtemp(dir="/tmp", prefix="fuzz-"))
    # Heartbeats every second notice closed streams soon, so they free their slots.
    # A public URL (its own address) turns the LNURL routes on; their rate
    # limits are raised so the examples reach the checks behind them.
    port = free_port()
    args: tuple[str, ...] = ("--sse-heartbeat", "1", "--max-streams", "512", "--port", str(port))
    args += ("--public-url", f"http://127.0.0.1:{port}", "--rate-limit", "100000/minute")
    args += ("--rate-limit-callback", "100000/minute")
    with Server(tmp / "data", *args) as server:
        yield Target(server, tmp / "data")
    shutil.rmtree(tmp, ignore_errors=True)


PLACEHOLDER = re.compile(r"<(?:[^:>]+:)?([^>]+)>")  # <name> or <converter:name>


@st.composite
def requests_for(
    draw: st.DrawFn, rule: str, known: dict[str, list[str]], seeds: list[dict[str, Any]]
) -> dict[str, Any]:
    def argument(match: re.Match[str]) -> str:
        value = draw(
            st.one_of(
                st.sampled_from(known.get(match[1], ["x"])),
                st.text(alphabet="0123456789abcdefABCDEF", min_size=63, max_size=65),
                ODD_TEXT.filter(lambda s: s not in ("", ".", "..")),
            )
        )
        return _encode(value)

    path = PLACEHOLDER.sub(argument, rule)
    query = draw(queries())
    headers: dict[str, Any] = {}
    # A token name, replaced by the token in _check (tokens exist only at run time).
    headers["Authorization"] = draw(
        st.sampled_from([*["admin"] * 6, "reader", None, "Bearer nope", b"Bearer \xff"])
    )
    for name in ("Idempotency-Key", "Last-Event-ID", "Content-Type", "X-Api-Key"):
        if draw(st.booleans()) and draw(st.booleans()):
            headers[name] = draw(HEADER_TEXT)
    return {
        "path": path + ("?" + query if query else ""),
        "body": draw(bodies(seeds)),
        "headers": headers,
    }


PARSER_REFUSAL = b"Invalid HTTP request received."  # uvicorn's answer to unparsable HTTP


def _parser_refused(status: int, headers: Any, body: bytes) -> bool:
    """The server's HTTP parser refused the request (a raw NUL or non-ASCII
    byte in a header or the request line) before any app code ran."""
    return (
        status == 400
        and headers.get("Content-Type", "").startswith("text/plain")
        and body == PARSER_REFUSAL
    )


def _check(target: Target, method: str, request: dict[str, Any]) -> None:
    headers = dict(request["headers"])
    tokens = {"admin": target.admin, "reader": target.reader}
    if headers["Authorization"] in tokens:
        headers["Authorization"] = f"Bearer {tokens[headers['Authorization']]}"
    before = target.counts()
    response = target.call(method, request["path"], request["body"], headers)
    where = f"{method} {request['path']} body={request['body']!r} headers={headers!r}"
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text}"
    if _parser_refused(response.status_code, response.headers, response.content):
        assert target.counts() == before, f"{where}: a refused request wrote to the store"
        return
    # The checkout routes are opened by people in a browser: their errors are a
    # short HTML page with the status, or the address form again with the
    # reason (api/checkout.py). A path no route matches still gets JSON.
    if (
        response.status_code >= 400
        and CHECKOUT_PAGES.match(request["path"])
        and response.headers["Content-Type"].startswith("text/html")
    ):
        assert re.search(r'id="(message|error)"', response.text), where
        assert target.counts() == before, f"{where}: a {response.status_code} wrote"
        return
    if response.status_code >= 400:
        assert response.headers["Content-Type"] == "application/json", where
        data = response.json()
        # Only the public LNURL routes answer in LUD-06's shape. Their paths
        # may still get Alby's: from the HTTP server, which refuses some
        # requests before routing, and as the 404 of a path no route matches.
        if "code" not in data:
            assert PUBLIC_LNURL.match(request["path"]), where
            assert data["status"] == "ERROR", where
            assert isinstance(data["reason"], str) and data["reason"], where
            assert target.counts() == before, (
                f"{where}: a {response.status_code} wrote to the store"
            )
            return
        assert data["code"] == response.status_code and data["error"] is True, where
        assert isinstance(data["message"], str) and data["message"], where
        assert isinstance(data.get("errors", {}), dict), where
        assert target.counts() == before, f"{where}: a {response.status_code} wrote to the store"


@pytest.mark.parametrize(("method", "rule"), ROUTES, ids=[f"{m} {r}" for m, r in ROUTES])
def test_every_route_refuses_generated_input_cleanly(
    target: Target, method: str, rule: str
) -> None:
    seeds = target.seeds_for(method, rule) if method != "GET" else SEEDS

    @SETTINGS
    @given(requests_for(rule, target.known, seeds))
    def run(request: dict[str, Any]) -> None:
        _check(target, method, request)

    run()


def test_routes_are_read_from_the_app() -> None:
    """The list above is the app's, so it has the routes the docs list, /dev included."""
    assert ("POST", "/dev/keysend") in ROUTES
    assert ("GET", "/invoices/<payment_hash>") in ROUTES
    assert len(ROUTES) >= 15


def _raw(target: Target, request_line: bytes) -> tuple[bytes, bytes]:
    host = urlsplit(target.server.url)
    with socket.create_connection((host.hostname, host.port), timeout=30) as sock:
        sock.sendall(
            request_line
            + b"\r\nHost: x\r\nAuthorization: Bearer "
            + target.admin.encode()
            + b"\r\nConnection: close\r\n\r\n"
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /invoices/\xff HTTP/1.1",
        b"GET /decode/bolt11/\xc3\xa9 HTTP/1.1",
        b"POST /invoices?q=\xff HTTP/1.1",
        b"GET /invoices/\x00 HTTP/1.1",
        b"GET /info HTTP/1.1\r\nno colon in this header line",
    ],
    ids=["latin1-byte", "raw-utf8", "raw-query", "nul", "malformed-header"],
)
def test_a_request_line_the_http_parser_refuses_gets_a_400_and_writes_nothing(
    target: Target, request_line: bytes
) -> None:
    before = target.counts()
    head, body = _raw(target, request_line)
    status = head.split(b"\r\n")[0]
    assert status.split()[1] == b"400", head
    assert b"\r\ncontent-type: text/plain" in head.lower(), head
    assert body == PARSER_REFUSAL, body
    assert target.counts() == before


# -- the defects the generated input found, as fixed examples ---------------------------


def _refused(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/json"
    data = response.json()
    assert data["code"] == 400 and data["error"] is True
    return data.get("errors", {})


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/dev/keysend", '{"amount_msat":1000,"custom_records":{"696969":"\\ud800"}}',
         "custom_records.696969"),
        ("/invoices", '{"amount":1,"description":"caf\\udce9"}', "description"),
        ("/invoices", '{"amount":1,"memo":"\\ud800"}', "memo"),
        ("/invoices", '{"amount":1,"comment":"\\ud800"}', "comment"),
        ("/invoices", '{"amount":1,"payer_name":"\\udfff"}', "payer_name"),
        ("/invoices", '{"amount":1,"metadata":{"a":["ok","\\ud800"]}}', "metadata.a.1"),
        ("/invoices", '{"amount":1,"metadata":{"\\ud800":1}}', "metadata.\\ud800"),
        ("/invoices", '{"amount":1,"webhook":"https://example.com/\\ud800"}', "webhook"),
        ("/webhook_endpoints",
         '{"url":"https://example.com/","description":"\\ud800",'
         '"filter_types":["invoice.incoming.settled"]}', "description"),
        ("/decode", '{"invoice":"lnbc\\ud800"}', "invoice"),
    ],
)  # fmt: skip
def test_a_lone_surrogate_in_any_body_field_is_a_400_naming_it(
    target: Target, path: str, body: str, field: str
) -> None:
    before = target.counts()
    errors = _refused(target.call("POST", path, body.encode()))
    assert list(errors) == [field]
    assert "lone surrogate U+D" in errors[field]
    assert target.counts() == before


@pytest.mark.parametrize(
    ("route", "name", "value"),
    [
        ("/webhook_endpoints/{endpoint_id}/deliveries", "items", "²"),
        ("/invoices/{payment_hash}/deliveries", "items", "9" * 5000),
        ("/events", "last_event_id", "²"),
        ("/invoices/{payment_hash}/events", "last_event_id", "9" * 5000),
        ("/invoices", "items", "\u0663"),  # int() reads Arabic-Indic 3 as 3
        ("/invoices", "q[created_at_gt]", "1_000"),
    ],
)
def test_integer_parameters_take_ascii_digits_only(
    target: Target, route: str, name: str, value: str
) -> None:
    endpoint = target.call("POST", "/webhook_endpoints", json.dumps(SEEDS[3]).encode())
    assert endpoint.status_code == 201, endpoint.text  # its own: the fuzzer may delete others
    path = route.format(
        endpoint_id=endpoint.json()["id"], payment_hash=target.known["payment_hash"][0]
    )
    errors = _refused(target.call("GET", f"{path}?{name}={quote(value)}"))
    assert list(errors) == [name]  # the field as sent: query parameter or header


def test_last_event_id_header_with_a_superscript_is_a_400(target: Target) -> None:
    headers = {"Authorization": f"Bearer {target.admin}", "Last-Event-ID": b"\xb2"}
    assert list(_refused(target.call("GET", "/events", headers=headers))) == ["Last-Event-ID"]


def test_a_keysend_record_type_in_other_digits_is_a_400(target: Target) -> None:
    body = '{"amount_msat":1000,"custom_records":{"\u00b9\u00b2\u00b3\u00b9\u00b2\u00b3":"x"}}'
    errors = _refused(target.call("POST", "/dev/keysend", body.encode()))
    assert "must be a decimal number" in errors["custom_records"]


def test_a_boostagram_with_unreadable_numbers_settles_and_later_payments_do_too(
    target: Target,
) -> None:
    """int() refuses a superscript or a 5000-digit string; the settlement feed used
    to stop at such a boostagram and settle nothing after it."""
    boost = json.dumps({"feedID": "²", "ts": "9" * 5000, "message": "hi"})
    body = json.dumps({"amount_msat": 1000, "custom_records": {"7629169": boost}})
    paid = target.call("POST", "/dev/keysend", body.encode())
    assert paid.status_code == 200, paid.text
    got = target.call("GET", f"/invoices/{paid.json()['payment_hash']}").json()
    assert got["settled"] is True
    assert got["boostagram"] == {"feedID": "²", "ts": "9" * 5000, "message": "hi"}
    invoice = target.call("POST", "/invoices", b'{"amount": 3}').json()
    pay = json.dumps({"payment_hash": invoice["payment_hash"]}).encode()
    after = target.call("POST", "/dev/pay", pay)
    assert after.status_code == 200 and after.json()["state"] == "SETTLED", after.text
    assert target.call("GET", "/health").json()["follower"]["last_error"] is None
