"""`lnplugin backup`: an online, consistent, private copy of the store.

The main test runs the server as a real process, keeps creating invoices
over HTTP, and takes a backup from a second process in the middle of it:
every invoice the server acknowledged before the backup began must be in
the copy, and the copy must be whole (every invoice has the outbox event
written in its transaction). Then the copy is restored into a fresh data
dir and read back with `lnplugin export`, as an operator would.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from lnplugin.store.migrations import read_only_uri
from lnplugin_sim.cln_plugin_driver import PluginDriver
from lnplugin_sim.cln_sim import ClnSim
from tests import e2e


def lnplugin(data_dir: Path, *args: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LNPLUGIN_")}
    return e2e.run(data_dir, *args, env=env)


def read(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(read_only_uri(path), uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_backup_taken_during_writes_holds_every_acknowledged_invoice(tmp_path) -> None:
    data = tmp_path / "data"
    target = tmp_path / "backup.sqlite"
    acknowledged: list[str] = []
    stop = threading.Event()
    failures: list[str] = []

    with e2e.Server(data) as server:

        def write() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                reply = server.request(
                    "POST", "/invoices", json={"amount": n, "description": f"during backup {n}"}
                )
                if reply.status_code != 201:
                    failures.append(f"{reply.status_code} {reply.text}")
                    return
                acknowledged.append(reply.json()["payment_hash"])

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        try:
            e2e.wait_for(lambda: len(acknowledged) >= 20 or failures, "20 invoices")
            before = set(acknowledged)  # acknowledged before the backup began
            proc = lnplugin(data, "backup", str(target))
            assert proc.returncode == 0, proc.stderr
            count_after = len(acknowledged)
            # Writes went on while the backup ran, and go on after it.
            e2e.wait_for(lambda: len(acknowledged) > count_after + 5 or failures, "more writes")
        finally:
            stop.set()
            writer.join(timeout=30)
        assert not failures, failures

    assert "Backed up" in proc.stdout
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert read(target, "PRAGMA integrity_check") == [("ok",)]
    assert read(target, "PRAGMA journal_mode") == [("delete",)]  # one self-contained file
    assert not Path(f"{target}-wal").exists()
    saved = {h for (h,) in read(target, "SELECT payment_hash FROM invoices")}
    assert before <= saved, f"missing {len(before - saved)} acknowledged invoices"
    assert saved <= set(acknowledged)  # nothing half-made or invented
    # Whole transactions only: each invoice with the created event written beside it.
    orphans = read(
        target,
        "SELECT COUNT(*) FROM invoices i WHERE NOT EXISTS "
        "(SELECT 1 FROM events e WHERE e.invoice_id = i.id)",
    )
    assert orphans == [(0,)]
    assert not list(tmp_path.glob(".backup.sqlite.partial-*"))

    # Restore into a fresh data dir, as docs/operations.md says, and read it back.
    restored = tmp_path / "restored"
    restored.mkdir(mode=0o700)
    shutil.copyfile(target, restored / "lnplugin.sqlite")
    os.chmod(restored / "lnplugin.sqlite", 0o600)
    lines = lnplugin(restored, "export", "--format", "jsonl").stdout.splitlines()
    assert {json.loads(line)["payment_hash"] for line in lines} == saved


def test_a_backup_refuses_to_overwrite_unless_forced(tmp_path) -> None:
    data = tmp_path / "data"
    lnplugin(data, "token", "create", "--scope", "admin")  # creates the store
    target = tmp_path / "b.sqlite"
    target.write_text("precious")
    proc = lnplugin(data, "backup", str(target))
    assert proc.returncode == 2
    assert "--force" in proc.stderr
    assert target.read_text() == "precious"
    proc = lnplugin(data, "backup", str(target), "--force")
    assert proc.returncode == 0, proc.stderr
    assert read(target, "SELECT COUNT(*) FROM tokens") == [(1,)]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_backup_of_a_missing_store_creates_nothing(tmp_path) -> None:
    proc = lnplugin(tmp_path / "none", "backup", str(tmp_path / "b.sqlite"))
    assert proc.returncode == 2
    assert "no lnplugin store" in proc.stderr
    assert not (tmp_path / "none").exists() and not (tmp_path / "b.sqlite").exists()


@pytest.mark.parametrize(
    "where", ["store", "store-wal", "store-shm", "dev-node-store", "node.key", "missing-dir"]
)
def test_a_backup_onto_the_data_dirs_own_files_or_into_no_directory_is_refused(
    tmp_path, where
) -> None:
    """Written over the store's -wal (or anything else lnplugin keeps there),
    a backup would destroy what the store had not yet checkpointed."""
    data = tmp_path / "data"
    lnplugin(data, "token", "create", "--scope", "admin")
    target = {
        "store": data / "lnplugin.sqlite",
        "store-wal": data / "lnplugin.sqlite-wal",
        "store-shm": data / "lnplugin.sqlite-shm",
        "dev-node-store": data / "devnode.sqlite",
        "node.key": data / "node.key",
        "missing-dir": tmp_path / "no" / "b.sqlite",
    }[where]
    before = target.read_bytes() if target.exists() else None
    proc = lnplugin(data, "backup", str(target), "--force")
    assert proc.returncode == 2, proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1
    if where == "missing-dir":  # as with docs/operations.md's first command on a new host
        assert proc.stderr.strip() == f"Error: {target.parent} does not exist; create it first"
    assert (target.read_bytes() if target.exists() else None) == before
    assert read(data / "lnplugin.sqlite", "SELECT COUNT(*) FROM tokens") == [(1,)]


def test_a_data_dir_whose_name_has_uri_characters_backs_up(tmp_path) -> None:
    """The store is opened read-only through an SQLite URI: `?` and `#` in a path
    must not be read as the URI's query or fragment."""
    data = tmp_path / "odd?name#1" / "data"
    lnplugin(data, "token", "create", "--scope", "admin")
    target = tmp_path / "odd?name#1" / "b.sqlite"
    proc = lnplugin(data, "backup", str(target))
    assert proc.returncode == 0, proc.stderr
    assert read(target, "SELECT COUNT(*) FROM tokens") == [(1,)]


def test_a_backup_removes_what_a_killed_backup_left_beside_it(tmp_path) -> None:
    """A killed backup leaves its temporary copy (preimages and all) and its
    journal; the next backup to that name removes them, and leaves alone
    those of a backup still running."""
    import subprocess
    import sys

    data = tmp_path / "data"
    lnplugin(data, "token", "create", "--scope", "admin")
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(gone.stdout)
    left = [tmp_path / f".b.sqlite.partial-{dead}", tmp_path / f".b.sqlite.partial-{dead}-journal"]
    running = tmp_path / f".b.sqlite.partial-{os.getpid()}"
    for path in (*left, running):
        path.write_bytes(b"half a copy")
    proc = lnplugin(data, "backup", str(tmp_path / "b.sqlite"))
    assert proc.returncode == 0, proc.stderr
    assert not any(path.exists() for path in left)
    assert running.exists()


def test_a_backup_tightens_a_store_copied_in_loose_as_opening_it_would(tmp_path) -> None:
    data = tmp_path / "data"
    lnplugin(data, "token", "create", "--scope", "admin")
    store = data / "lnplugin.sqlite"
    os.chmod(store, 0o644)
    assert lnplugin(data, "backup", str(tmp_path / "b.sqlite")).returncode == 0
    for path in data.glob("lnplugin.sqlite*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_backup_to_an_empty_name_is_one_line() -> None:
    proc = lnplugin(Path("/nonexistent-data-dir"), "backup", "")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "Error: Invalid value for FILE: must name a file"


def test_a_backup_holds_the_keysend_records_the_cln_plugin_queued_on_disk(tmp_path) -> None:
    """The CLN hook took a boost while another writer held the store's write
    lock: its records were acknowledged (lightningd settled the keysend and
    never calls the hook for it again) and kept in `htlc-records.jsonl` until
    the lock frees. A backup taken then copied the store alone, so a restore
    of it lost the boostagram: the follower re-read the settlement from the
    node, which does not keep the records. The backup takes them in."""
    target = tmp_path / "backup.sqlite"
    with (
        ClnSim(tmp_path / "sim", tmp_path / "rpc") as sim,
        PluginDriver(sim, tmp_path / "lnp") as plugin,
    ):
        token = plugin.admin_token  # before the lock is taken: the CLI writes it
        data = plugin.data_dir
        holder = sqlite3.connect(data / "lnplugin.sqlite", timeout=10, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another writer's lock, held over the backup
            payment_hash = plugin.keysend(21000, {7629169: e2e.BOOST_BYTES})
            assert (data / "htlc-records.jsonl").exists()  # queued on disk, not stored
            proc = lnplugin(data, "backup", str(target))
            assert proc.returncode == 0, proc.stderr
            holder.execute("ROLLBACK")
        finally:
            holder.close()
        e2e.wait_for(lambda: not (data / "htlc-records.jsonl").exists(), "the queue stored")
        assert plugin.shutdown() == 0

        # Restore as docs/operations.md says: the store and its -wal/-shm aside.
        aside = tmp_path / "aside"
        aside.mkdir()
        for path in data.glob("lnplugin.sqlite*"):
            path.rename(aside / path.name)
        shutil.copyfile(target, data / "lnplugin.sqlite")
        os.chmod(data / "lnplugin.sqlite", 0o600)
        plugin.start()
        api = e2e.Api(plugin.url, token)
        try:
            got = e2e.wait_for(lambda: api.settled(payment_hash), "the settlement re-read")
        finally:
            api.close()
    assert got["boostagram"]["message"] == e2e.BOOST["message"]
    assert got["boostagram"]["sender_name"] == e2e.BOOST["sender_name"]
    assert "It holds the keysend records of 1 payment(s)" in proc.stdout
