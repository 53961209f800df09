"""Per-token request limits over real HTTP: `lnplugin serve` as a process.

The server default is 5 an hour here and one token has its own 3 an hour.
Windows are anchored at a bucket's first hit, so an hour-long window cannot
roll over during the test and reset a count under it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import Server, cli, run


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("limits") / "data"
    with Server(data, env={"LNPLUGIN_TOKEN_RATE_LIMIT": "5/hour"}) as srv:
        yield srv


def new_token(server: Server, *extra: str) -> str:
    return cli(server.data_dir, "token", "create", "--scope", "admin", *extra).splitlines()[-1]


def test_every_answer_counts_down_and_the_one_beyond_the_limit_is_a_429(server: Server) -> None:
    token = new_token(server)
    seen = []
    for _ in range(5):
        reply = server.request("GET", "/invoices", token=token)
        assert reply.status_code == 200
        assert reply.headers["X-RateLimit-Limit"] == "5"
        assert "Retry-After" not in reply.headers
        seen.append(int(reply.headers["X-RateLimit-Remaining"]))
        reset = int(reply.headers["X-RateLimit-Reset"])
        assert time.time() < reset <= time.time() + 3601
    assert seen == [4, 3, 2, 1, 0]
    refused = server.request("GET", "/invoices", token=token)
    assert refused.status_code == 429
    body = refused.json()
    assert body["code"] == 429 and body["error"] is True and "5/hour" in body["message"]
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert refused.headers["X-RateLimit-Remaining"] == "0"


def test_a_token_with_its_own_limit_and_other_tokens_keep_their_own_buckets(
    server: Server,
) -> None:
    own = new_token(server, "--rate-limit", "3/hour")
    other = new_token(server)
    codes = [server.request("GET", "/invoices", token=own).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    reply = server.request("GET", "/invoices", token=other)
    assert reply.status_code == 200
    assert reply.headers["X-RateLimit-Limit"] == "5"
    assert reply.headers["X-RateLimit-Remaining"] == "4"


def test_error_answers_carry_the_headers_and_a_request_without_a_token_is_not_counted(
    server: Server,
) -> None:
    token = new_token(server)
    missing = server.request("GET", "/invoices/" + "0" * 64, token=token)
    assert missing.status_code == 404
    assert missing.headers["X-RateLimit-Remaining"] == "4"
    anonymous = server.session.get(server.url + "/invoices", timeout=10)
    assert anonymous.status_code == 401
    assert "X-RateLimit-Limit" not in anonymous.headers


def test_token_create_refuses_an_unreadable_rate_and_list_shows_the_rate(
    tmp_path: Path, server: Server
) -> None:
    proc = run(server.data_dir, "token", "create", "--scope", "admin", "--rate-limit", "lots")
    assert proc.returncode != 0 and "not a rate such as 100/minute" in proc.stderr
    new_token(server, "--rate-limit", "7/second", "--label", "fast")
    listed = cli(server.data_dir, "token", "list")
    assert any("fast" in line and "rate 7/second" in line for line in listed.splitlines())
