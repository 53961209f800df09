"""End to end: `lnplugin serve` as a real process on the dev node, over HTTP.

This is the README's walk-through, run as a test: create, get, list with
every filter and paging mode, decode, pay from the CLI and over HTTP, receive
a boostagram keysend, restart, and find everything still there.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import bolt11 as reference

from tests.e2e import Server, cli, run


def test_walkthrough_survives_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Server(data) as server:
        assert server.token, "first start prints a bootstrap admin token"
        info = server.request("GET", "/info").json()
        assert info["node"]["kind"] == "dev"
        assert info["node"]["connected_to_network"] is False
        assert "not connected" in info["notice"]

        created = server.request(
            "POST", "/invoices", json={"amount": 21, "description": "coffee", "payer_name": "Ann"}
        )
        assert created.status_code == 201
        invoice = created.json()
        assert invoice["state"] == "CREATED"
        assert invoice["preimage"] is None
        decoded_ref = reference.decode(invoice["payment_request"])
        assert decoded_ref.payment_hash == invoice["payment_hash"]
        assert decoded_ref.amount_msat == 21_000

        # Pay it from the command line, exactly as a user would.
        paid = json.loads(cli(data, "dev", "pay", invoice["payment_request"]))
        assert paid["state"] == "SETTLED"
        got = _wait_settled(server, invoice["payment_hash"])
        assert got["settled"] is True
        assert got["amount_received_msat"] == 21_000
        assert len(got["preimage"]) == 64

        again = cli(data, "dev", "pay", invoice["payment_hash"], check=False)
        assert "not open" in again

        keysend = cli(
            data,
            "dev",
            "keysend",
            "--amount-msat",
            "5000",
            "--record",
            '7629169={"podcast":"Pod","feedID":"42","message":"great show","ts":"17"}',
            "--record",
            "34349334=hello",
        )
        boost_hash = json.loads(keysend)["payment_hash"]
        boost = _wait_settled(server, boost_hash)
        assert boost["boostagram"]["feedID"] == 42
        assert boost["boostagram"]["message"] == "great show"
        assert boost["keysend_message"] == "hello"
        assert set(boost["custom_records"]) == {"7629169", "34349334"}

        over_http = server.request(
            "POST", "/invoices", json={"amount": 0, "description": "any amount"}
        ).json()
        response = server.request(
            "POST",
            "/dev/pay",
            json={"payment_hash": over_http["payment_hash"], "amount_msat": 1234},
        )
        assert response.status_code == 200
        assert (
            server.request("GET", f"/invoices/{over_http['payment_hash']}").json()[
                "amount_received_msat"
            ]
            == 1234
        )

        incoming = server.request("GET", "/invoices/incoming").json()
        assert [i["payment_hash"] for i in incoming] == [
            over_http["payment_hash"],
            boost_hash,
            invoice["payment_hash"],
        ]
        decoded = server.request("GET", f"/decode/bolt11/lightning:{invoice['payment_request']}")
        assert decoded.json()["payment_hash"] == invoice["payment_hash"]
        assert decoded.json()["payee_alias"] == "lnplugin-dev"
        assert server.stop() == 0, "SIGTERM shuts down cleanly"

    with Server(data) as server:
        assert server.token is None, "the bootstrap token is printed only once"
        server.token = cli(data, "token", "create", "--scope", "admin").strip().splitlines()[-1]
        after = server.request("GET", "/invoices/incoming").json()
        assert [i["payment_hash"] for i in after] == [i["payment_hash"] for i in incoming]
        assert server.request("GET", f"/invoices/{invoice['payment_hash']}").json()["settled"]


def test_lists_filters_and_paging_over_http(tmp_path: Path) -> None:
    with Server(tmp_path / "data") as server:
        made = []
        for n in range(7):
            inv = server.request("POST", "/invoices", json={"amount": n + 1}).json()
            made.append(inv)
        newest_first = [m["identifier"] for m in reversed(made)]
        everything = server.request("GET", "/invoices").json()
        assert [i["identifier"] for i in everything] == newest_first

        page2 = server.request("GET", "/invoices", params={"items": 3, "page": 2}).json()
        assert [i["identifier"] for i in page2] == newest_first[3:6]
        before = server.request(
            "GET", "/invoices", params={"items": 2, "q[before]": newest_first[2]}
        ).json()
        assert [i["identifier"] for i in before] == newest_first[3:5]
        since = server.request(
            "GET", "/invoices", params={"items": 2, "q[since]": newest_first[4]}
        ).json()
        assert [i["identifier"] for i in since] == newest_first[2:4]
        created = made[0]["creation_date"]
        assert server.request("GET", "/invoices", params={"q[created_at_lt]": created}).json() == []
        assert (
            len(server.request("GET", "/invoices", params={"q[created_at_gt]": created - 1}).json())
            == 7
        )
        bad = server.request("GET", "/invoices", params={"page": 0, "items": 500})
        assert bad.status_code == 400
        assert set(bad.json()["errors"]) == {"page"}
        assert server.request("GET", "/invoices/outgoing").json() == []


def test_a_chunked_body_is_read_whole_and_held_to_the_same_64_kib_limit(tmp_path: Path) -> None:
    # A generator makes `requests` send Transfer-Encoding: chunked, no Content-Length.
    def chunked(body: bytes) -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    headers = {"Content-Type": "application/json"}
    with Server(tmp_path / "data") as server:
        small = json.dumps({"amount": 21, "description": "chunked"}).encode()
        made = server.request("POST", "/invoices", data=chunked(small), headers=headers)
        assert made.status_code == 201, made.text
        assert made.json()["memo"] == "chunked"

        # Valid JSON, over the limit: 413, as when the length is declared, not
        # a JSON error about the bytes that fit.
        big = json.dumps({"amount": 21, "description": "x" * 70_000}).encode()
        for body in (chunked(big), big):
            refused = server.request("POST", "/invoices", data=body, headers=headers)
            assert refused.status_code == 413, refused.text
            assert refused.json()["code"] == 413
        assert len(server.request("GET", "/invoices").json()) == 1


def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(data).start()
    token = server.token
    hashes = [
        server.request("POST", "/invoices", json={"amount": 1}).json()["payment_hash"]
        for _ in range(5)
    ]
    for h in hashes[:3]:
        assert server.request("POST", "/dev/pay", json={"payment_hash": h}).status_code == 200
    server.stop(signal.SIGKILL)
    # Paid while lnplugin is down: the node keeps it, the follower catches up.
    for h in hashes[3:]:
        cli(data, "dev", "pay", h)
    server = Server(data).start()
    server.token = token
    try:
        for h in hashes:
            assert _wait_settled(server, h)["settled"]
        assert len(server.request("GET", "/invoices/incoming").json()) == 5
    finally:
        server.stop()


def test_a_boost_with_a_number_past_any_float_does_not_stop_the_feed(tmp_path: Path) -> None:
    # `1e999` is JSON; Python reads it as inf and wrote it back as Infinity,
    # which SQLite refused: the payment was never stored, nor any after it.
    with Server(tmp_path / "data") as server:
        hashes = []
        for record in (
            '{"action":"boost","value_msat_total":1e999,"message":"big fan"}',
            '{"action":"boost","value_msat":NaN,"message":"hi"}',
            '{"action":"boost","message":"after"}',
        ):
            paid = server.request(
                "POST",
                "/dev/keysend",
                json={"amount_msat": 5000, "custom_records": {"7629169": record}},
            )
            assert paid.status_code == 200, paid.text
            hashes.append(paid.json()["payment_hash"])
        boosts = [_wait_settled(server, h).get("boostagram") for h in hashes]
        assert boosts == [
            {"action": "boost", "value_msat_total": "1e999", "message": "big fan"},
            {"action": "boost", "value_msat": "NaN", "message": "hi"},
            {"action": "boost", "message": "after"},
        ]
        listed = server.request("GET", "/invoices/incoming", params={"q[action]": "boost"}).json()
        assert [i["payment_hash"] for i in listed] == hashes[::-1]


def _wait_settled(server: Server, payment_hash: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = server.request("GET", f"/invoices/{payment_hash}").json()
        if body.get("settled") or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


def test_a_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    # Two followers and webhook workers over one store would send every webhook twice.
    data = tmp_path / "data"
    first = Server(data).start()
    assert first.proc is not None
    try:
        second = run(data, "serve", "--port", "0")
        assert second.returncode == 2
        assert f"is already serving {data}" in second.stderr
        assert f"pid {first.proc.pid}" in second.stderr
        # Started again as the first was (same port): named as the same refusal,
        # not as a busy port, which would send the operator to change --port.
        port = first.url.rsplit(":", 1)[1]
        again = run(data, "serve", "--port", port)
        assert again.returncode == 2
        assert f"another lnplugin (pid {first.proc.pid}) is already serving {data}" in again.stderr
        assert "in use" not in again.stderr
        # The first one is unaffected.
        assert first.request("GET", "/health").json()["status"] == "ok"
    finally:
        first.stop(signal.SIGKILL)
    # The kernel released the lock with the killed process: no stale lock.
    restarted = Server(data).start()
    try:
        assert restarted.request("GET", "/health").status_code == 200
    finally:
        restarted.stop()


def test_status_finds_a_server_listening_on_ipv6(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Server(data, "--host", "::1") as server:
        assert server.url.startswith("http://[::1]:")
        port = server.url.rsplit(":", 1)[1]
        reply = json.loads(cli(data, "status", "--host", "::1", "--port", port))
    assert reply["server"] == "running"
    assert reply["url"] == f"http://[::1]:{port}/health"


def test_status_asks_the_server_of_its_own_data_dir_not_whatever_has_the_port(
    tmp_path: Path,
) -> None:
    # Two servers on two data dirs; `status` is given neither port.
    with Server(tmp_path / "a") as a, Server(tmp_path / "b") as b:
        b.request("POST", "/invoices", json={"amount": 1})
        for server in (a, b):
            reply = json.loads(cli(server.data_dir, "status"))
            assert reply["server"] == "running"
            assert reply["url"] == f"{server.url}/health"
            # With the data dir's status key: the operator's view, no token needed.
            assert "cursor" in reply["follower"] and "lag" in reply["follower"]
        # With a stopped, the port given is one where b answers: a's store is
        # reported as not running, not b's server as a's.
        a.stop()
        port = b.url.rsplit(":", 1)[1]
        reply = json.loads(cli(a.data_dir, "status", "--port", port))
        assert reply["server"] == "not running" and "url" not in reply  # b's URL is not a's
        assert reply["store"] == str(a.data_dir / "lnplugin.sqlite")
        assert reply["invoices"] == {}
        b.request("POST", "/invoices", json={"amount": 2})
        b.stop()
        reply = json.loads(cli(b.data_dir, "status"))
        assert reply["invoices"] == {"CREATED": 2}  # as the API names an unpaid invoice


def test_status_takes_a_server_that_noted_no_url_only_where_it_listens(tmp_path: Path) -> None:
    """An older server notes no URL in its lock file; `status` asked --port
    and reported whatever answered there (another data dir's server, any
    program) as this data dir's."""
    with Server(tmp_path / "a") as a, Server(tmp_path / "b") as b:
        # a's lock file as an older lnplugin writes it: pid and node kind only.
        lock = a.data_dir / "lnplugin.lock"
        lock.write_text(" ".join(lock.read_text().split()[:2]) + "\n")
        port_a, port_b = a.url.rsplit(":", 1)[1], b.url.rsplit(":", 1)[1]
        reply = json.loads(cli(a.data_dir, "status", "--port", port_b))
        assert reply["server"] == "not reached" and "url" not in reply  # b is not a's
        assert a.proc is not None and f"pid {a.proc.pid}" in reply["reason"]
        assert f":{port_b}/health" in reply["reason"]
        assert reply["store"] == str(a.data_dir / "lnplugin.sqlite")  # what the store holds
        # At the port a listens on, a is found: its process holds both.
        reply = json.loads(cli(a.data_dir, "status", "--port", port_a))
        assert reply["server"] == "running" and reply["url"] == f"{a.url}/health"
        assert reply["node"] == "dev"


def test_the_banner_says_where_it_listens_and_then_where_payers_reach_it(tmp_path: Path) -> None:
    with Server(tmp_path / "data", "--public-url", "https://pay.example.com") as server:
        assert server.banner[0].startswith("lnplugin dev node listening on http://127.0.0.1:")
        assert server.banner[1] == "Payers reach it at https://pay.example.com"
        assert server.request("GET", "/health").status_code == 200  # the printed address


def test_under_systemd_no_token_is_printed_unless_asked(tmp_path: Path) -> None:
    # Under systemd standard output is the journal: a token printed there
    # would stay readable in the logs, so none is made, and the banner says how.
    journal = {"JOURNAL_STREAM": "8:12345"}
    with Server(tmp_path / "quiet", env=journal) as server:
        assert server.token is None
        # With the data dir: the default one may be another user's, or not this server's.
        hint = f"`lnplugin token create --scope admin --data-dir {tmp_path / 'quiet'}`"
        assert server.banner[-1].endswith(hint)
    with Server(tmp_path / "quiet", "--bootstrap-token", env=journal) as server:
        assert server.token is not None and server.token.startswith("lnp_")
        assert server.request("GET", "/invoices/incoming").status_code == 200


def test_serve_logs_a_misspelt_setting_once_and_runs_on(tmp_path: Path) -> None:
    with Server(tmp_path / "data", env={"LNPLUGIN_PUBLC_URL": "https://pay.example.com"}) as server:
        assert server.request("GET", "/health").status_code == 200
        # The setting was not taken: no Lightning Addresses without it.
        assert len(server.banner) == 1 or not server.banner[1].startswith("Payers reach it")
    warned = [line for line in server.stderr_text().splitlines() if "PUBLC" in line]
    assert len(warned) == 1
    assert warned[0].endswith(
        "LNPLUGIN_PUBLC_URL is not a setting lnplugin reads (ignored); "
        "did you mean LNPLUGIN_PUBLIC_URL?"
    )


def test_status_of_a_data_dir_that_does_not_exist_says_so_not_another_servers_state(
    tmp_path: Path,
) -> None:
    """A mistyped --data-dir: nothing is there, and nothing serves it. `status`
    asked --host/--port all the same and reported the server answering there,
    which serves another data dir, as this one's: `"server": "running"`."""
    missing = tmp_path / "mistyped"
    empty = tmp_path / "empty"
    empty.mkdir()
    with Server(tmp_path / "other") as other:
        port = other.url.rsplit(":", 1)[1]
        proc = run(missing, "status", "--port", port)
        bare = run(empty, "status", "--port", port)  # a directory, but no store in it
    assert proc.returncode == 2, proc.stdout
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"Error: no data dir at {missing}"), line
    assert "--data-dir" in line and "running" not in line
    assert not missing.exists()
    assert bare.returncode == 2 and bare.stdout == "", bare.stdout
    (line,) = bare.stderr.strip().splitlines()
    assert line.startswith(f"Error: no lnplugin store at {empty / 'lnplugin.sqlite'}"), line
    assert list(empty.iterdir()) == []
