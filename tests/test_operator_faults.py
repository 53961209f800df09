"""What an operator meets when a setting, the data dir or the store cannot work.

Every case runs `lnplugin` as a real process and checks the promise the README
makes: one line naming the setting or file, exit status 2, no traceback; a
store locked by another process answers 503 with Retry-After; lnplugin's files
are private whatever the umask.

Root ignores permission bits, so "cannot be written" is simulated with things
that fail for root too: a data dir *under a regular file* (mkdir gets ENOTDIR),
and `/proc` as the data dir (procfs refuses to create files for anyone).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import http.server
import json
import os
import pwd
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lnplugin.nodes.dev.node import DB_FILE, KEY_FILE
from lnplugin.nodes.lnd.macaroon import LND_BAKE
from lnplugin.store import migrations
from lnplugin_sim.cln_sim import ClnSim
from lnplugin_sim.lnd_sim import LndSim, ip_lock, mint_macaroon, time_before
from tests import e2e
from tests.e2e import Server, wait_for
from tests.test_lnd_e2e import serve_args
from tests.test_store import database_at

tmp = e2e.fixture_tmp


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LNPLUGIN_")}
    return {**env, "LNPLUGIN_LOG_LEVEL": "warning", **extra}


def refused(data_dir: Path | str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `lnplugin ARGS`; assert one `Error:` line on stderr and exit 2; return the line."""
    proc = e2e.run(Path(data_dir), *args, env=env or _env())
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: "), lines
    assert "Traceback" not in proc.stderr
    return lines[0]


# -- the store ---------------------------------------------------------------------


def _real_store(data_dir: Path) -> None:
    e2e.cli(data_dir, "token", "create", "--scope", "admin")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
@pytest.mark.parametrize(
    "command",
    [("serve", "--port", "0"), ("token", "create", "--scope", "admin"), ("token", "list")],
)
def test_a_damaged_store_is_named_in_one_line(tmp: Path, damage: str, command: tuple[str, ...]):
    data = tmp / "data"
    db = data / "lnplugin.sqlite"
    if damage == "garbage":
        data.mkdir(mode=0o700)
        db.write_bytes(os.urandom(8192))
    else:
        _real_store(data)
        size = db.stat().st_size
        with sqlite3.connect(db) as conn:  # fold the WAL in, so the file holds the schema
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with db.open("r+b") as fh:
            fh.truncate(size // 3)
            fh.seek(0)
            fh.write(b"\0" * 100)  # header gone too: SQLite must notice at open
    line = refused(data, *command)
    assert str(db) in line
    assert "damaged" in line


def test_a_damaged_dev_node_database_is_named_in_one_line(tmp: Path):
    data = tmp / "data"
    _real_store(data)
    (data / "devnode.sqlite").write_bytes(os.urandom(4096))
    line = refused(data, "serve", "--port", "0")
    assert str(data / "devnode.sqlite") in line


def test_a_damaged_dev_node_key_is_named_in_one_line(tmp: Path):
    data = tmp / "data"
    _real_store(data)
    (data / "node.key").write_text("not a key\n")
    for args in (("serve", "--port", "0"), ("dev", "mine")):
        line = refused(data, *args)
        assert str(data / "node.key") in line and "not a hex secp256k1 key" in line


@pytest.mark.parametrize(
    "args",
    [
        ("token", "list"),
        ("token", "revoke", "1"),
        ("nwc", "list"),
        ("address", "list"),
        # A payment on a dev node no server follows would print SETTLED and
        # reach nothing: the README's walk-through with `make run ARGS="--data-dir
        # ./data"` and no `export LNPLUGIN_DATA_DIR`.
        ("dev", "keysend", "--amount-msat", "1000"),
        ("dev", "pay", "11" * 32),
        ("dev", "mine"),
    ],
)
def test_commands_that_read_the_store_refuse_a_data_dir_without_one(tmp: Path, args):
    line = refused(tmp / "mistyped", *args)
    assert "no lnplugin store" in line and "--data-dir" in line
    assert not (tmp / "mistyped").exists()  # nothing left behind


def test_export_over_an_existing_loose_file_makes_it_private(tmp: Path):
    data = tmp / "data"
    _real_store(data)
    out = tmp / "invoices.csv"
    out.write_text("old\n")
    out.chmod(0o644)
    e2e.cli(data, "export", "-o", str(out))
    assert _mode(out) == 0o600 and out.read_text().startswith("identifier,")


def test_export_to_a_directory_that_does_not_exist_is_one_line(tmp: Path):
    data = tmp / "data"
    _real_store(data)
    line = refused(data, "export", "-o", str(tmp / "absent" / "out.csv"))
    assert "--output" in line and "No such file or directory" in line


def test_a_data_dir_that_cannot_be_created(tmp: Path):
    blocker = tmp / "file"
    blocker.write_text("not a directory")
    line = refused(blocker / "data", "token", "create", "--scope", "admin")
    assert "data_dir" in line and str(blocker / "data") in line
    line = refused(blocker / "data", "serve", "--port", "0")
    assert "data_dir" in line


@pytest.mark.parametrize(
    "args",
    [("token", "create", "--scope", "admin"), ("dev", "mine"), ("serve", "--port", "0")],
    ids=lambda args: " ".join(args[:2]),
)
def test_root_in_the_service_users_data_dir_is_refused(tmp: Path, args: tuple[str, ...]):
    """`sudo lnplugin token create --data-dir /var/lib/lnplugin` (meant: sudo -u
    lnplugin) made a root-owned 0600 store there, or the dev node's key: the
    service could not open it and stopped at its next start. Run by anyone
    else, a data dir they share with its owner keeps working."""
    data = tmp / "data"
    data.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(data, 65534, 65534)
        try:
            line = refused(data, *args)
        finally:
            os.chown(data, 0, 0)
        assert line.startswith("Error: invalid setting data_dir (--data-dir / LNPLUGIN_DATA_DIR)")
        assert "(uid 65534)" in line and "sudo -u" in line
        assert list(data.iterdir()) == []  # nothing made there as root
    else:  # not root: the data dir is this user's own, and used as ever
        assert e2e.run(data, "token", "create", "--scope", "admin", env=_env()).returncode == 0


@pytest.mark.parametrize(
    "args",
    [("token", "create", "--scope", "admin"), ("token", "list"), ("serve", "--port", "0")],
    ids=lambda args: " ".join(args[:2]),
)
def test_root_whose_store_it_is_keeps_its_data_dir(tmp: Path, args: tuple[str, ...]):
    """A deployment served as root in a directory another uid owns (`docker run
    --user 0` on a volume the image made for uid 10001, a unit without `User=`)
    owns its store already: refusing root stopped it at its first start after
    the upgrade, with advice (run as the directory's owner) under which the
    root-owned 0600 store cannot be opened at all. The store's owner decides;
    a store the other user owns is still refused."""
    data = tmp / "data"
    data.mkdir(mode=0o700)
    _real_store(data)  # an earlier run made it, as this user
    store = data / "lnplugin.sqlite"
    if os.geteuid() == 0:
        os.chown(data, 10001, 10001)
        try:
            if args[0] == "serve":
                with Server(data, "--node", "dev", env=_env()) as server:
                    assert server.request("GET", "/health").status_code == 200
            else:
                proc = e2e.run(data, *args, env=_env())
                assert proc.returncode == 0, proc.stderr
            assert store.stat().st_uid == 0
            os.chown(store, 10001, 10001)  # the service user's store: root is refused
            line = refused(data, *args)
            try:  # sudo takes a uid without a name as #uid
                sudo = f"sudo -u {pwd.getpwuid(10001).pw_name} "
            except KeyError:
                sudo = "sudo -u '#10001' "
            assert "(uid 10001)" in line and sudo in line
        finally:
            for path in (data, *data.iterdir()):
                os.chown(path, 0, 0)
    else:  # not root: the data dir is this user's own, and used as ever
        assert e2e.run(data, "token", "list", env=_env()).returncode == 0


@pytest.mark.parametrize(
    "args",
    [("serve", "--port", "0"), ("token", "create", "--scope", "admin"), ("token", "list")],
    ids=lambda args: " ".join(args[:2]),
)
def test_a_data_dir_that_is_a_file_is_named_as_one(tmp: Path, args: tuple[str, ...]):
    """From the environment (the flag is click's to check): said as it is,
    not as "cannot create: File exists" or a missing FILE/lnplugin.sqlite."""
    blocker = tmp / "file"
    blocker.write_text("not a directory")
    proc = subprocess.run(
        [sys.executable, "-m", "lnplugin", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(LNPLUGIN_DATA_DIR=str(blocker)),
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    (line,) = proc.stderr.strip().splitlines()
    assert line == (
        f"Error: invalid setting data_dir (--data-dir / LNPLUGIN_DATA_DIR): {blocker} "
        "is a file, not a directory"
    )


def test_a_data_dir_that_cannot_be_written():
    # procfs refuses new files even to root
    line = refused(Path("/proc"), "token", "create", "--scope", "admin")
    assert "/proc/lnplugin.sqlite" in line


# Root meets file modes as any user once CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
# are out of its bounding set. setpriv (util-linux, essential on Debian) drops
# them in the child itself. Dropping them in a `preexec_fn` made subprocess
# fork the whole pytest worker, gRPC's fork handlers included, and run Python
# in the child before exec: now and then the child aborted in gRPC
# ("epoll_wait error: Bad file descriptor") instead of running lnplugin.
WITHOUT_FILE_ACCESS_OVERRIDE = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--")


@contextlib.contextmanager
def _unreadable(path: Path) -> Iterator[tuple[str, ...]]:
    """Make `path` (a file or a directory) unreadable to the lnplugin a test
    starts, with the command prefix to start it with: another user's, mode
    0600/0700, for a root test run (which then drops its file-access
    capabilities); mode 0 otherwise."""
    mode = stat.S_IMODE(path.stat().st_mode)
    root = os.geteuid() == 0
    if root:
        os.chown(path, 65534, 65534)
    path.chmod((0o700 if path.is_dir() else 0o600) if root else 0)
    try:
        yield WITHOUT_FILE_ACCESS_OVERRIDE if root else ()
    finally:
        if root:
            os.chown(path, 0, 0)
        path.chmod(mode)


def _refused_as(prefix: tuple[str, ...], *args: str, env: dict[str, str], cwd: Path) -> str:
    """`refused`, with the data dir left to `env` and the child started under `prefix`."""
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "lnplugin", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("Error: "), line
    return line


@pytest.mark.parametrize(
    "args",
    [
        ("status", "--port", "1"),
        ("token", "list"),
        ("token", "revoke", "1"),
        ("export",),
        ("backup", "copy.sqlite"),
        ("doctor",),
        ("dev", "pay", "ab" * 32),
        ("nwc", "list"),
        ("address", "list"),
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_a_data_dir_this_user_cannot_read_is_one_line(tmp: Path, args: tuple[str, ...]):
    """The service's data dir (0700, its own user) named in LNPLUGIN_DATA_DIR by
    an operator running as someone else: one line naming the setting, as the
    flag gets from click, not a PermissionError traceback."""
    data = tmp / "data"
    _real_store(data)
    env = _env(LNPLUGIN_DATA_DIR=str(data), HOME=str(tmp))
    with _unreadable(data) as prefix:
        line = _refused_as(prefix, *args, env=env, cwd=tmp)
    assert line.startswith("Error: invalid setting data_dir (--data-dir / LNPLUGIN_DATA_DIR)")
    assert str(data) in line and "Permission denied" in line


# -- settings that cannot work -------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_port_in_use_is_one_line(tmp: Path, busy_port: int):
    line = refused(tmp / "data", "serve", "--port", str(busy_port))
    assert "--port" in line and "in use" in line
    # At the default log level too: nothing is logged before the port is bound.
    env = _env(LNPLUGIN_LOG_LEVEL="info")
    line = refused(tmp / "data", "serve", "--port", str(busy_port), env=env)
    assert "--port" in line
    # Bound before the data dir is made: a busy port leaves no store or node key behind.
    assert not (tmp / "data").exists()


@pytest.mark.parametrize("host", ["999.1.1.1", "no-such-host.invalid"])
def test_an_invalid_host_is_one_line(tmp: Path, host: str):
    line = refused(tmp / "data", "serve", "--port", "0", "--host", host)
    assert "--host" in line and host in line


@pytest.fixture
def lnd(tmp: Path) -> Iterator[LndSim]:
    with LndSim(tmp / "lnd", network="regtest", port=0) as sim:
        yield sim


def test_a_dev_node_data_dir_is_served_with_a_real_node_only_when_asked(tmp: Path, lnd: LndSim):
    """It was served with warnings (only `doctor` named it): the dev node's
    simulated invoices and payments sat beside the real node's, in the API,
    exports and NWC's transactions."""
    data = tmp / "data"
    with Server(data) as dev:
        assert dev.request("POST", "/invoices", json={"amount": 21}).status_code == 201
    real = serve_args(lnd)
    line = refused(data, "serve", "--port", "0", *real)
    assert f"{data} was last served by the embedded dev node" in line
    assert "a fresh --data-dir" in line and "--reuse-dev-data-dir" in line
    assert (data / "lnplugin.lock").read_text().split()[1] == "dev"  # nothing taken over
    with Server(data, *real, "--reuse-dev-data-dir") as server:
        assert server.request("GET", "/health").json()["node"] == "lnd"
    # Served with lnd since: its data dir now, as any other.
    with Server(data, *real) as server:
        assert server.request("GET", "/health").json()["node"] == "lnd"
    # The setting from the environment confirms it as the flag does.
    other = tmp / "other"
    with Server(other):
        pass
    env = {"LNPLUGIN_REUSE_DEV_DATA_DIR": "true"}
    with Server(other, *real, env=env) as server:
        assert server.request("GET", "/health").json()["node"] == "lnd"


def _followed(data: Path) -> str | None:
    with contextlib.closing(sqlite3.connect(data / "lnplugin.sqlite")) as db:
        row = db.execute("SELECT pubkey FROM followed_node").fetchone()
    return None if row is None else str(row[0])


def test_a_real_nodes_data_dir_is_served_by_the_dev_node_only_when_asked(tmp: Path, lnd: LndSim):
    """The service's environment file did not load, so `--node` fell back to
    dev: it started the embedded dev node on the store of a real node (only
    `doctor` warned), its simulated invoices and payments joining the real
    ones, and the follower taking the cursors over as another node's."""
    data = tmp / "data"
    with Server(data, *serve_args(lnd)) as server:
        created = server.request("POST", "/invoices", json={"amount": 21})
        assert created.status_code == 201
        wait_for(lambda: _followed(data), "the follower to note lnd's identity")
    line = refused(data, "serve", "--port", "0")  # no LNPLUGIN_NODE: the default, dev
    assert f"{data} was last served by the lnd node {lnd.pubkey} (--node lnd)" in line, line
    assert "--node lnd (LNPLUGIN_NODE)" in line and "its own --data-dir" in line
    assert "--reuse-node-data-dir (LNPLUGIN_REUSE_NODE_DATA_DIR)" in line
    assert (data / "lnplugin.lock").read_text().split()[1] == "lnd"  # nothing taken over
    assert not (data / KEY_FILE).exists() and not (data / DB_FILE).exists()  # nor made
    with Server(data, "--reuse-node-data-dir", env=_env()) as server:
        assert server.request("GET", "/health").json()["node"] == "dev"
    # Served with the dev node since: its data dir now, as any other.
    with Server(data, env=_env()) as server:
        assert server.request("GET", "/health").json()["node"] == "dev"


def test_an_lnd_macaroon_neither_file_nor_hex(tmp: Path, lnd: LndSim):
    line = refused(
        tmp / "data", "serve", "--port", "0", "--node", "lnd", "--lnd-host", lnd.target,
        "--lnd-cert", str(lnd.cert_path), "--lnd-macaroon", str(tmp / "missing.macaroon"),
    )  # fmt: skip
    assert "lnd_macaroon" in line and "--lnd-macaroon" in line


def test_an_lnd_macaroon_file_this_user_cannot_read(tmp: Path, lnd: LndSim):
    """Copied in as root, 0600: `serve` died on a PermissionError traceback."""
    macaroon = tmp / "lnplugin.macaroon"
    macaroon.write_bytes(lnd.admin_macaroon_path.read_bytes())
    with _unreadable(macaroon) as prefix:
        line = _refused_as(
            prefix, "serve", "--port", "0", "--data-dir", str(tmp / "data"), "--node", "lnd",
            "--lnd-host", lnd.target, "--lnd-cert", str(lnd.cert_path),
            "--lnd-macaroon", str(macaroon), env=_env(), cwd=tmp,
        )  # fmt: skip
    assert line.startswith("Error: invalid setting lnd_macaroon (--lnd-macaroon")
    assert f"cannot read {macaroon}" in line and "Permission denied" in line


def _rejected_macaroon(tmp: Path, lnd: LndSim, how: str) -> Path | None:
    """A macaroon lnd refuses outright, as `how` says; None: none at all."""
    if how == "none":
        return None
    if how == "foreign":
        with LndSim(tmp / "other") as other:
            return other.admin_macaroon_path
    if how == "lost root key":
        path = tmp / "lost.macaroon"
        path.write_bytes(mint_macaroon(READ_AND_WRITE, root_key_id=b"1"))
        return path
    if how == "expired":
        yesterday = _dt.datetime.now(_dt.UTC) - _dt.timedelta(days=1)
        return lnd.bake(READ_AND_WRITE, "expired.macaroon", [time_before(yesterday)])
    return lnd.bake(READ_AND_WRITE, "ip.macaroon", [ip_lock("192.0.2.7")])


READ_AND_WRITE = frozenset({"invoices:read", "invoices:write", "info:read", "offchain:read"})


@pytest.mark.parametrize("how", ["none", "foreign", "lost root key", "expired", "ip-locked"])
def test_a_macaroon_lnd_rejects_refuses_to_start(tmp: Path, lnd: LndSim, how: str):
    """It was taken for a missing permission: `serve` logged "network check
    unavailable (credentials refused)", then served for ever with a follower
    reconnecting with backoff and every create a 403. Real lnd's wording
    (status UNKNOWN), as the simulator answers with error_style "lnd"."""
    lnd.faults.error_style = "lnd"
    macaroon = _rejected_macaroon(tmp, lnd, how)
    args = ["--node", "lnd", "--network", "regtest", "--lnd-host", lnd.target]
    args += ["--lnd-cert", str(lnd.cert_path)]
    if macaroon is not None:
        args += ["--lnd-macaroon", str(macaroon)]
    line = refused(tmp / "data", "serve", "--port", "0", *args)
    setting = "Error: invalid setting lnd_macaroon (--lnd-macaroon / LNPLUGIN_LND_MACAROON): "
    assert line.startswith(setting) and f"lnd at {lnd.target}" in line
    assert line.endswith(f" with: {LND_BAKE}")
    says = {
        "none": "none is given",
        "foreign": "is it from this node?",
        "lost root key": "root key with id 1 doesn't exist",
        "expired": "it has expired",
        "ip-locked": "locked to another address",
    }
    assert says[how] in line, line


def test_a_macaroon_lnd_rejects_once_serving_is_a_node_unavailable(tmp: Path, lnd: LndSim):
    """Refused after the start (the operator reset lnd's macaroons), it is as
    a node that is down: creates answer 503 with Retry-After, serve runs on,
    and works again once lnd takes the macaroon again."""
    lnd.faults.error_style = "lnd"
    with Server(tmp / "data", *serve_args(lnd), env=_env()) as server:
        granted = lnd.forget(lnd.admin_macaroon_path)
        try:
            reply = server.request("POST", "/invoices", json={"amount": 10})
            assert reply.status_code == 503 and reply.headers["Retry-After"].isdigit()
            assert "rejected it" in reply.json()["message"], reply.json()
        finally:
            lnd.remember(lnd.admin_macaroon_path, granted)
        reply = server.request("POST", "/invoices", json={"amount": 10})
        assert reply.status_code == 201, reply.text


def test_a_valid_macaroon_without_info_read_still_serves(tmp: Path, lnd: LndSim):
    """lnd's invoice.macaroon lacks info:read, so the network check cannot be
    made: a warning, and lnplugin serves (creates work), as before."""
    lnd.faults.error_style = "lnd"
    server = Server(
        tmp / "data", "--node", "lnd", "--network", "regtest", "--lnd-host", lnd.target,
        "--lnd-cert", str(lnd.cert_path), "--lnd-macaroon", str(lnd.invoice_macaroon_path),
        env=_env(),
    ).start()  # fmt: skip
    try:
        assert server.request("POST", "/invoices", json={"amount": 10}).status_code == 201
    finally:
        assert server.stop() == 0
    stderr = server.stderr_text()
    assert "network check skipped (the credentials lack the permission)" in stderr
    assert "Error:" not in stderr and "Traceback" not in stderr


def test_an_unreadable_lnd_cert(tmp: Path, lnd: LndSim):
    for cert in (tmp / "missing.cert", tmp):  # missing; a directory, unreadable even to root
        line = refused(
            tmp / "data", "serve", "--port", "0", "--node", "lnd", "--lnd-host", lnd.target,
            "--lnd-cert", str(cert), "--lnd-macaroon", str(lnd.admin_macaroon_path),
        )  # fmt: skip
        assert "lnd_cert" in line and str(cert) in line


def test_an_lnd_cert_that_is_not_a_certificate(tmp: Path, lnd: LndSim):
    cert = tmp / "tls.cert"
    cert.write_text("this is not PEM\n")
    line = refused(
        tmp / "data", "serve", "--port", "0", "--node", "lnd", "--lnd-host", lnd.target,
        "--lnd-cert", str(cert), "--lnd-macaroon", str(lnd.admin_macaroon_path),
    )  # fmt: skip
    assert "lnd_cert" in line and "not a PEM certificate" in line


def test_a_node_down_at_start_that_comes_back_on_another_network_stops_serve(
    tmp: Path, lnd: LndSim
):
    # The network check is postponed while lnd is down; made once it answers,
    # it refuses as at start (one line, status 2) rather than mint there.
    lnd.stop()
    server = Server(
        tmp / "data", "--node", "lnd", "--network", "bitcoin", "--lnd-host", lnd.target,
        "--lnd-cert", str(lnd.cert_path), "--lnd-macaroon", str(lnd.admin_macaroon_path),
    ).start()  # fmt: skip
    assert server.proc is not None
    lnd.start()  # a regtest node
    code = server.proc.wait(timeout=60)
    stderr = server.stderr_text()
    assert code == 2, stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert "regtest" in line and "bitcoin" in line
    assert "Traceback" not in stderr


def test_a_node_that_never_answers_does_not_hold_up_the_start(tmp: Path, lnd: LndSim):
    """lnd accepts the connection but answers nothing (busy, or half up): serve
    does not wait out the call's deadline (30 s, during which it listened on
    nothing and left SIGTERM and Ctrl-C pending) but postpones the network
    check, serves, and stops cleanly."""
    lnd.faults.delay = 40.0  # longer than any call's deadline
    try:
        server = Server(
            tmp / "data", "--node", "lnd", "--network", "regtest", "--lnd-host", lnd.target,
            "--lnd-cert", str(lnd.cert_path), "--lnd-macaroon", str(lnd.admin_macaroon_path),
        ).start()  # fmt: skip
        assert server.request("GET", "/health").status_code in (200, 503)
        assert server.stop() == 0
    finally:
        lnd.faults.delay = 0.0
    stderr = server.stderr_text()
    assert "network check postponed" in stderr and "Traceback" not in stderr


def test_cln_without_a_socket(tmp: Path):
    line = refused(tmp / "data", "serve", "--port", "0", "--node", "cln")
    assert "cln_socket" in line


def test_a_cln_socket_this_user_may_not_open(tmp: Path):
    """lightningd's socket is 0600 (`rpc-file-mode`): run as another user,
    `serve` started and retried it forever, warning in the log; a permission
    does not come back by itself as lightningd does, so it is refused."""
    rpc_dir = tmp / "lightning"
    rpc_dir.mkdir()
    path = rpc_dir / "lightning-rpc"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(path))
        listening.listen()
        path.chmod(0o600)
        for unreadable in (path, rpc_dir):  # the socket; a directory on the way
            with _unreadable(unreadable) as prefix:
                line = _refused_as(
                    prefix, "serve", "--port", "0", "--data-dir", str(tmp / "data"),
                    "--node", "cln", "--cln-socket", str(path), "--network", "regtest",
                    env=_env(), cwd=tmp,
                )  # fmt: skip
            assert line.startswith("Error: invalid setting cln_socket (--cln-socket"), line
            assert str(path) in line and "rpc-file-mode" in line


def test_a_cln_socket_path_that_is_not_a_socket(tmp: Path):
    regular = tmp / "lightning-rpc"
    regular.write_text("")
    for path in (regular, tmp):  # a regular file; a directory
        line = refused(
            tmp / "data", "serve", "--port", "0", "--node", "cln", "--cln-socket", str(path)
        )
        assert "cln_socket" in line and "is not a unix socket" in line
    # Under a file: no socket can ever appear there, so it is no "not up yet".
    line = refused(
        tmp / "data", "serve", "--port", "0", "--node", "cln", "--cln-socket", f"{regular}/rpc"
    )
    assert line.endswith(f"{regular}/rpc is under a file, not a directory")


def test_an_unreachable_node_still_starts(tmp: Path):
    # The socket file does not exist: lightningd is not up yet. Not a setting error.
    with Server(
        tmp / "data",
        "--node",
        "cln",
        "--cln-socket",
        str(tmp / "rpc"),
        "--public-url",
        "https://pay.example.com",
    ) as server:
        reply = server.request("POST", "/invoices", json={"amount": 10})
        assert reply.status_code == 503
        # As every 503 (docs/operations.md): a client backs off by it, then tries again.
        assert reply.headers["Retry-After"].isdigit(), reply.headers
        assert "unreachable" in reply.json()["message"]
        # A wallet paying a Lightning Address is told the same.
        added = server.request("POST", "/lightning_addresses", json={"username": "bob"})
        assert added.status_code == 201, added.text
        wallet = server.request("GET", "/lnurlp/bob/callback?amount=5000")
        assert wallet.status_code == 503
        assert wallet.json()["status"] == "ERROR" and "unreachable" in wallet.json()["reason"]
        assert wallet.headers["Retry-After"].isdigit(), wallet.headers


# -- secrets on disk ------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_files_are_private_whatever_the_umask(tmp: Path):
    data = tmp / "deep" / "data"
    env = _env()
    # umask 000 would leave everything world-readable without explicit modes
    proc = subprocess.Popen(
        [sys.executable, "-c", "import os, sys; os.umask(0); from lnplugin.run.cli import main; "
         "sys.argv = ['lnplugin', 'serve', '--port', '0', '--data-dir', sys.argv[1]]; main()",
         str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("Admin token"):
                break
        files = {p.name: _mode(p) for p in data.iterdir()}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert _mode(data) == 0o700
    for name in (
        "lnplugin.sqlite",
        "lnplugin.sqlite-wal",
        "lnplugin.sqlite-shm",
        "devnode.sqlite",
        "devnode.sqlite-wal",
        "devnode.sqlite-shm",
        "node.key",
        "lnplugin.lock",
    ):
        assert files.get(name) == 0o600, (name, files)


def test_loose_files_are_tightened_and_a_loose_dir_is_warned_about(tmp: Path):
    data = tmp / "data"
    _real_store(data)
    os.chmod(data, 0o755)
    os.chmod(data / "lnplugin.sqlite", 0o644)
    with Server(data) as server:
        assert _mode(data / "lnplugin.sqlite") == 0o600
    os.chmod(data / "node.key", 0o644)  # as a copy restored without care would be
    with Server(data) as server:
        assert _mode(data / "node.key") == 0o600
        assert _mode(data) == 0o755  # an operator's dir is not chmod'ed ...
    assert "readable by group or others" in server.stderr_text()  # ... but warned about


# -- status and the dev commands -----------------------------------------------------


def test_status_without_a_store_says_so_and_creates_nothing(tmp: Path, busy_port: int):
    # busy_port: a listener that is not lnplugin, so no server answers there
    data = tmp / "nothing-here"
    line = refused(data, "status", "--port", "1")
    assert "no lnplugin store" in line and str(data) in line
    assert not data.exists()


def test_dev_keysend_and_pay_refuse_a_store_another_node_serves(tmp: Path):
    with (
        ClnSim(tmp / "sim", tmp / "rpc") as sim,
        Server(
            tmp / "data", "--node", "cln", "--cln-socket", sim.socket_path, "--network", "regtest"
        ),
    ):
        pass
    data = tmp / "data"
    line = refused(data, "dev", "keysend", "--amount-msat", "1000")
    assert "cln" in line
    refused(data, "dev", "pay", "ab" * 32)
    assert not (data / "devnode.sqlite").exists()


# -- a store locked by another process ------------------------------------------------


def test_a_locked_store_answers_503_and_names_the_orphan_invoice(tmp: Path):
    data = tmp / "data"
    with Server(data, "--busy-timeout", "0.2", env={"LNPLUGIN_LOG_LEVEL": "info"}) as server:
        holder = sqlite3.connect(data / "lnplugin.sqlite", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process's write lock, held
        try:
            reply = server.request("POST", "/invoices", json={"amount": 21})
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert reply.status_code == 503
        assert reply.headers["Retry-After"].isdigit()
        body = reply.json()
        assert body["code"] == 503 and body["error"] is True and body["message"]
        # The dev node (its own database) made the invoice; the store could not keep it.
        with sqlite3.connect(data / "devnode.sqlite") as dev:
            (orphan,) = [r[0] for r in dev.execute("SELECT payment_hash FROM dev_invoices")]
        assert server.request("GET", f"/invoices/{orphan}").status_code == 404
        # once the lock is gone, writes work again
        assert server.request("POST", "/invoices", json={"amount": 21}).status_code == 201
    log = server.stderr_text()
    (line,) = [line for line in log.splitlines() if orphan in line]
    assert " ERROR " in line and "not stored" in line


# -- upgrading while an older server runs ----------------------------------------------

# A process that serves a data dir as far as its lock goes: it takes the lock
# `lnplugin serve` and the CLN plugin take (`service.lock_data_dir`) and holds
# it until its stdin closes, on a store this lnplugin has not migrated, as an
# older version's server would.
HOLD_THE_LOCK = """
import sys
from pathlib import Path
from lnplugin.service import lock_data_dir
lock = lock_data_dir(Path(sys.argv[1]), "dev")
print("held", flush=True)
sys.stdin.read()
"""


def _older_server(data: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(data)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


class _Impostor(http.server.BaseHTTPRequestHandler):
    """Answers every GET as an lnplugin's /health would: what listens on the
    port `status` asks when the older server noted no URL (another data
    dir's server, or any program; on a test machine, maybe on 8080)."""

    asked = 0

    def do_GET(self) -> None:
        type(self).asked += 1
        body = json.dumps({"status": "ok", "node": "dev", "follower": {}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def impostor() -> Iterator[int]:
    """The port of an HTTP server that answers like an lnplugin, not this data dir's."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Impostor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_no_command_migrates_a_store_an_older_server_still_serves(
    tmp: Path, monkeypatch, impostor: int
):
    """A newer lnplugin's `token list` run before the older server was
    restarted migrated the store under that server, which went on writing
    into a schema it does not know. Now commands that would migrate it
    refuse in one line; backup and doctor, which never migrate, still work.
    `status` is pointed at a port where something else answers: the older
    server noted no URL, and what answers there is not it (the test passed
    or failed by whether anything listened on 8080)."""
    data, latest = tmp / "data", max(migrations.MIGRATIONS)
    old = latest - 2
    database_at(data / "lnplugin.sqlite", old, monkeypatch)
    server = _older_server(data)
    try:
        for command in (
            ("token", "list"),
            ("token", "create", "--scope", "admin"),
            ("export",),
            ("status", "--port", str(impostor)),
            ("serve", "--port", "0"),  # a second server too: before it finds the lock taken
        ):
            line = refused(data, *command)
            assert f"needs migrating from schema {old} to {latest}" in line, (command, line)
            assert f"server (pid {server.pid}) is running" in line and str(data) in line
            assert migrations.stored_version(data / "lnplugin.sqlite") == old, command
        assert _Impostor.asked == 0  # the older server's process does not listen there
        done = e2e.run(data, "backup", str(tmp / "before-upgrade.sqlite"), env=_env())
        assert done.returncode == 0, done.stderr
        assert f"schema version {old}" in done.stdout
        code, lines = e2e.run_doctor(data)
        (store,) = [line for line in lines if line.startswith("WARN store")]
        assert f"pid {server.pid}" in store and "restart" in store and "Traceback" not in store
        assert code == 0
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=20)
    # The lock file still names the dead server; only a live lock blocks.
    assert (data / "lnplugin.lock").read_text().split()[0] == str(server.pid)
    e2e.cli(data, "token", "list", env=_env())
    assert migrations.stored_version(data / "lnplugin.sqlite") == latest
    # Beside a server, a store that needs no migration opens as before.
    server = _older_server(data)
    try:
        assert e2e.cli(data, "token", "create", "--scope", "admin", env=_env()).strip()
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=20)
