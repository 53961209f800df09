"""`lnplugin doctor`: check the node, its credentials, and the data dir.

An operator's first question is "why does lnplugin not see my payments / my
boostagrams?". Each check answers one cause in one line, with the fix, so
the output can be pasted into an issue as is. The node checks belong to each
node package (`lnplugin.nodes.<kind>.doctor`), which knows its node; this
module asks `lnplugin.nodes.doctor_checks` for them, adds the checks every
node kind shares (the data dir, the store in it, free space, which node last
served it) and turns the result into an exit code.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from pathlib import Path

from lnplugin.config import Settings
from lnplugin.datadir import lock_holder
from lnplugin.nodes import doctor_checks
from lnplugin.nodes.checks import Check, Status

__all__ = ["Check", "Status", "data_dir_checks", "exit_code", "free_space", "run"]

MiB = 1024 * 1024
GiB = 1024 * MiB
# The store grows by a few KiB per invoice; SQLite needs room for its WAL and
# for a checkpoint. Below these, writes (and so settlements) start failing.
FAIL_BELOW = 100 * MiB
WARN_BELOW = 1 * GiB


def exit_code(checks: list[Check]) -> int:
    """1 when any check failed (warnings alone still exit 0)."""
    return 1 if any(c.status == "fail" for c in checks) else 0


def run(settings: Settings) -> list[Check]:
    """The checks for the node kind the settings select, then the data dir's."""
    checks = doctor_checks(settings)
    if checks is None:
        checks = [Check("node", "warn", f"no doctor checks for --node {settings.node} yet")]
    return checks + data_dir_checks(settings)


def data_dir_checks(settings: Settings) -> list[Check]:
    """The data dir, the store in it, free space, and the node kind that last served it."""
    path = settings.data_dir
    checks = [_data_dir(path), _store(settings.db_path), free_space(path)]
    served = _served(path, settings.node)
    if served is not None:
        checks.append(served)
    return checks


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _data_dir(path: Path) -> Check:
    uid = os.getuid()
    if not path.exists():
        parent = _existing(path)
        if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
            return Check("data dir", "ok", f"{path} does not exist yet; serve creates it (0700)")
        return Check(
            "data dir",
            "fail",
            f"{path} does not exist and cannot be created: {parent} is not writable by uid "
            f"{uid} (--data-dir / LNPLUGIN_DATA_DIR)",
        )
    if not path.is_dir():
        return Check("data dir", "fail", f"{path} is not a directory (--data-dir)")
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        return Check(
            "data dir",
            "fail",
            f"{path} (mode {mode:04o}, owner uid {info.st_uid}) is not writable by uid {uid}: "
            "run as its owner",
        )
    if mode & 0o077:
        return Check(
            "data dir",
            "warn",
            f"{path} (mode {mode:04o}) is open to group or others and holds preimages and "
            f"webhook secrets: chmod 700 {path}",
        )
    if info.st_uid != uid:
        return Check(
            "data dir", "warn", f"{path} is owned by uid {info.st_uid}, not this user (uid {uid})"
        )
    return Check("data dir", "ok", f"{path} (mode {mode:04o})")


def _store(db_path: Path) -> Check:
    from lnplugin.store.migrations import MIGRATIONS, quick_check, stored_version

    latest = max(MIGRATIONS)
    if not db_path.exists():
        return Check("store", "ok", f"none yet; the first start creates it (schema {latest})")
    mode = stat.S_IMODE(db_path.stat().st_mode)
    try:
        version = stored_version(db_path)
        verdict = quick_check(db_path)
    except sqlite3.DatabaseError as exc:
        verdict = str(exc)
    if verdict != "ok":
        return Check(
            "store",
            "fail",
            f"{db_path} cannot be read ({verdict}): restore it from a backup (docs/operations.md)",
        )
    if version > latest:
        return Check(
            "store",
            "fail",
            f"schema version {version} is newer than this lnplugin's ({latest}): run the newer "
            "lnplugin, or restore the backup taken before the upgrade",
        )
    if mode & 0o077:
        return Check("store", "warn", f"{db_path} mode {mode:04o}: chmod 600 {db_path}")
    holder = lock_holder(db_path.parent) if version < latest else None
    if holder is not None:  # an older server: other commands refuse the store (`Store`)
        return Check(
            "store",
            "warn",
            f"schema version {version}, served by an older lnplugin (pid {holder}): restart "
            f"that server with this version, which migrates it to {latest}; until then "
            "commands that open the store refuse it",
        )
    if version < latest:
        return Check(
            "store",
            "warn",
            f"schema version {version}; the next start migrates it to {latest}: take a backup "
            "first (lnplugin backup FILE)",
        )
    return Check("store", "ok", f"{db_path} (mode {mode:04o}, schema version {version})")


def free_space(path: Path, fail_below: int = FAIL_BELOW, warn_below: int = WARN_BELOW) -> Check:
    """Free space on the data dir's filesystem (its nearest existing parent's)."""
    where = _existing(Path(path))
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:
        return Check("free space", "warn", f"cannot measure free space at {where}: {exc}")
    amount = f"{free / GiB:.1f} GiB" if free >= GiB else f"{free // MiB} MiB"
    if free < fail_below:
        return Check(
            "free space",
            "fail",
            f"only {amount} free at {where}: the store's writes (settlements) will fail",
        )
    if free < warn_below:
        return Check("free space", "warn", f"only {amount} free at {where}")
    return Check("free space", "ok", f"{amount} free at {where}")


def _served(path: Path, node: str) -> Check | None:
    """Which node kind last served this data dir, when not the one selected now."""
    from lnplugin.service import served_kind

    kind = served_kind(path)
    if kind in (None, "") or kind == node:
        return None
    # `serve` refuses these (`service.refuse_a_dev_data_dir`,
    # `service.refuse_a_node_data_dir`) unless asked.
    if kind == "dev":
        unless = " (serve refuses it without --reuse-dev-data-dir)"
    elif node == "dev" and kind in ("lnd", "cln"):
        unless = " (serve refuses it without --reuse-node-data-dir)"
    else:
        unless = ""
    return Check(
        "served by",
        "warn",
        f"{path} was last served with --node {kind}, not {node}{unless}: its invoices and "
        f"cursor belong to that node; check --node / LNPLUGIN_NODE and --data-dir",
    )
