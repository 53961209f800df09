"""Verified tokens kept in memory (`tokens.LiveTokens`) and the revocation mark
that ends them: a token revoked by any process is refused from the next request
on, in the server that kept it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from lnplugin.store import Store, tokens
from lnplugin.store.revocations import REVOCATIONS_FILE
from tests import e2e
from tests.helpers_present import present


def _admin_token(store: Store) -> tuple[int, str]:
    with store.transaction() as tx:
        return tokens.create(tx, ["admin"])


def test_a_token_revoked_through_another_store_is_refused_at_once(tmp_path: Path) -> None:
    server, other = Store(tmp_path / "s.sqlite"), Store(tmp_path / "s.sqlite")
    live = tokens.LiveTokens(server)
    token_id, token = _admin_token(other)
    kept_id, kept = _admin_token(other)
    assert present(live.verify(token)).id == token_id
    assert present(live.verify(kept)).id == kept_id
    asked: list[str] = []
    server.conn.set_trace_callback(asked.append)
    assert present(live.verify(token)).id == token_id
    assert asked == []  # answered from memory
    assert tokens.revoke(other, token_id)
    assert live.verify(token) is None
    assert present(live.verify(kept)).id == kept_id
    assert len(asked) == 2  # both asked again after the revocation
    assert not tokens.revoke(other, token_id)  # once only
    server.close()
    other.close()


def test_an_answer_read_before_the_revocation_committed_is_not_kept(tmp_path: Path) -> None:
    """The race the mark's order closes: the server reads the mark, then the
    token (still live), then the revocation commits and changes the mark. The
    kept answer belongs to the old mark, so the next request asks again."""
    server, other = Store(tmp_path / "s.sqlite"), Store(tmp_path / "s.sqlite")
    live = tokens.LiveTokens(server)
    token_id, token = _admin_token(other)
    original = tokens.verify

    def verify_then_revoked(conn, raw):
        found = original(conn, raw)
        tokens.verify = original  # once
        assert tokens.revoke(other, token_id)
        return found

    tokens.verify = verify_then_revoked
    try:
        assert live.verify(token) is not None  # answered before the revocation
    finally:
        tokens.verify = original
    assert live.verify(token) is None
    server.close()
    other.close()


def test_the_mark_is_a_private_file_beside_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    token_id, _ = _admin_token(store)
    tokens.revoke(store, token_id)
    mark = tmp_path / REVOCATIONS_FILE
    assert stat.S_IMODE(mark.stat().st_mode) == 0o600
    assert mark.stat().st_size == 16
    store.close()


def test_revoke_refuses_to_run_inside_a_transaction(tmp_path: Path) -> None:
    """Its mark must change after the commit, which an outer transaction would delay."""
    store = Store(tmp_path / "s.sqlite")
    token_id, _ = _admin_token(store)
    with pytest.raises(RuntimeError), store.transaction():
        tokens.revoke(store, token_id)
    assert tokens.revoke(store, token_id)
    store.close()


def test_without_a_mark_every_request_asks_the_store(tmp_path: Path) -> None:
    """A data dir where the mark cannot be made (here: a directory in its
    place) keeps nothing: a revocation is still seen at once."""
    (tmp_path / REVOCATIONS_FILE).mkdir()
    store = Store(tmp_path / "s.sqlite")
    live = tokens.LiveTokens(store)
    token_id, token = _admin_token(store)
    assert live.verify(token) is not None
    with store.transaction() as tx:  # as a process that could not change the mark
        tx.execute("UPDATE tokens SET revoked_at = 1 WHERE id = ?", (token_id,))
    assert live.verify(token) is None
    store.close()


def test_lnplugin_token_revoke_ends_a_token_the_server_kept(tmp_path: Path) -> None:
    with e2e.Server(tmp_path / "data") as server:
        created = e2e.cli(server.data_dir, "token", "create", "--scope", "admin")
        secret = created.splitlines()[-1]
        token_id = e2e.cli(server.data_dir, "token", "list").splitlines()[-1].split("\t")[0]
        for _ in range(3):  # verified once, then answered from memory
            assert server.request("GET", "/invoices", token=secret).status_code == 200
        e2e.cli(server.data_dir, "token", "revoke", token_id)
        refused = server.request("GET", "/invoices", token=secret)
        assert refused.status_code == 401, refused.text
        assert server.request("GET", "/invoices").status_code == 200  # the admin's goes on


def test_a_revocation_the_server_cannot_be_told_of_is_an_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    e2e.cli(data, "token", "create", "--scope", "admin")
    mark = data / REVOCATIONS_FILE
    mark.mkdir()  # a file no one can write, root included
    out = e2e.cli(data, "token", "revoke", "1", check=False)
    assert "token 1 is revoked in the store, but a running server may accept it" in out
    assert str(mark) in out and "Traceback" not in out
    assert "Revoked token 1" not in out
