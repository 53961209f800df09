"""`lnplugin doctor`'s checks for every node kind (the data dir, the store,
free space, which node last served it) and for the embedded dev node, run
as the operator runs it."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from lnplugin.doctor import free_space
from lnplugin.store import Store
from lnplugin.store.migrations import MIGRATIONS
from tests import e2e

LATEST = max(MIGRATIONS)


def doctor(data: Path, *args: str) -> tuple[int, dict[str, str]]:
    """Exit code and {check name: line}."""
    code, lines = e2e.run_doctor(data, *args)
    return code, {line[5:].split(":")[0]: line for line in lines}


def make_store(data: Path) -> Path:
    Store(data / "lnplugin.sqlite").close()  # creates data 0700 and the store 0600
    return data / "lnplugin.sqlite"


def test_a_fresh_install_is_all_ok(tmp_path: Path) -> None:
    code, lines = doctor(tmp_path / "data")
    assert code == 0
    assert list(lines) == ["dev node", "node key", "data dir", "store", "free space"]
    assert all(line.startswith("OK") for line in lines.values()), lines
    assert "does not exist yet" in lines["data dir"]
    assert f"schema {LATEST}" in lines["store"]


def test_a_served_data_dir_reports_its_schema_and_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_store(data)
    e2e.cli(data, "dev", "keysend", "--amount-msat", "1000")  # creates node.key
    code, lines = doctor(data)
    assert code == 0, lines
    assert lines["store"].startswith("OK") and f"schema version {LATEST}" in lines["store"]
    assert "(mode 0600," in lines["store"] and "(mode 0700)" in lines["data dir"]
    assert lines["node key"].startswith("OK   node key") and "node id" in lines["node key"]


def test_open_permissions_warn(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = make_store(data)
    os.chmod(data, 0o755)
    os.chmod(db, 0o644)
    code, lines = doctor(data)
    assert code == 0  # warnings only
    assert lines["data dir"].startswith("WARN") and "chmod 700" in lines["data dir"]
    assert lines["store"].startswith("WARN") and "chmod 600" in lines["store"]


def test_an_older_schema_warns_to_back_up_before_it_migrates(tmp_path: Path) -> None:
    db = make_store(tmp_path / "data")
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM schema_version WHERE version = ?", (LATEST,))
    _, lines = doctor(tmp_path / "data")
    previous = sorted(MIGRATIONS)[-2]  # numbers may skip: branches reserve theirs
    assert lines["store"].startswith(f"WARN store: schema version {previous}")
    assert "lnplugin backup" in lines["store"]


def test_a_newer_schema_fails_and_names_the_rollback(tmp_path: Path) -> None:
    db = make_store(tmp_path / "data")
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 'future', 0)", (LATEST + 1,))
    code, lines = doctor(tmp_path / "data")
    assert code == 1
    assert lines["store"].startswith(f"FAIL store: schema version {LATEST + 1} is newer")
    assert "restore the backup taken before the upgrade" in lines["store"]


def test_a_damaged_store_fails(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "lnplugin.sqlite").write_bytes(b"not a database at all" * 100)
    os.chmod(data / "lnplugin.sqlite", 0o600)
    code, lines = doctor(data)
    assert code == 1 and lines["store"].startswith("FAIL store") and "backup" in lines["store"]


def damage_the_invoices_table(store: Path) -> None:
    """Overwrite the head of the invoices table's root page: the file still
    opens and migrates (the schema is intact); reading invoices fails."""
    conn = sqlite3.connect(store, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'invoices'").fetchone()
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(store, "r+b") as f:
        f.seek((root[0] - 1) * size)
        f.write(b"\xff" * 16)


def test_a_store_damaged_past_its_schema_fails_in_one_line(tmp_path: Path) -> None:
    """Found by reading every page, before a query meets the damage; and a
    command that meets it says so in one line, not a traceback."""
    data = tmp_path / "data"
    damage_the_invoices_table(make_store(data))
    code, lines = doctor(data)
    assert code == 1 and lines["store"].startswith("FAIL store") and "backup" in lines["store"]
    assert "\n" not in lines["store"] and "***" not in lines["store"]
    for command in ("export", "status"):
        proc = e2e.run(data, command)
        assert proc.returncode == 2, proc.stderr
        [line] = proc.stderr.splitlines()
        assert line.startswith("Error: the store (lnplugin.sqlite in the data dir) failed (")
        assert "restore it from a backup" in line


def test_a_data_dir_last_served_by_another_node_warns(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_store(data)
    (data / "lnplugin.lock").write_text("12345 lnd\n")
    _, lines = doctor(data)
    assert lines["served by"].startswith("WARN served by") and "--node lnd" in lines["served by"]
    assert "--reuse-dev-data-dir" not in lines["served by"]
    # Checked for the dev node (the default --node): serve refuses it too.
    assert "not dev (serve refuses it without --reuse-node-data-dir)" in lines["served by"]


def test_a_dev_node_data_dir_checked_for_lnd_says_serve_refuses_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_store(data)
    (data / "lnplugin.lock").write_text("12345 dev\n")
    _, lines = doctor(data, "--node", "lnd", "--lnd-macaroon", "00")
    line = lines["served by"]
    assert "--node dev, not lnd (serve refuses it without --reuse-dev-data-dir)" in line


def test_a_data_dir_that_cannot_be_created_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, lines = doctor(blocker / "data")
    assert code == 1 and lines["data dir"].startswith("FAIL data dir")


def test_the_dev_node_on_mainnet_warns(tmp_path: Path) -> None:
    _, lines = doctor(tmp_path / "data", "--network", "bitcoin")
    assert lines["dev node"].startswith("WARN dev node") and "lnbc" in lines["dev node"]


def test_a_damaged_node_key_fails(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "node.key").write_text("not hex\n")
    os.chmod(data / "node.key", 0o600)
    code, lines = doctor(data)
    assert code == 1 and lines["node key"].startswith("FAIL node key")


@pytest.mark.parametrize(
    "fail_below,warn_below,status",
    [(0, 0, "ok"), (0, 1 << 62, "warn"), (1 << 62, 1 << 62, "fail")],
)
def test_free_space_thresholds(tmp_path: Path, fail_below: int, warn_below: int, status) -> None:
    # The real free space of this disk, judged against thresholds below and above it.
    check = free_space(tmp_path / "not-yet", fail_below=fail_below, warn_below=warn_below)
    assert check.status == status and str(tmp_path) in check.detail
