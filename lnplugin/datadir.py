"""The data dir and the files lnplugin keeps in it, private whatever the umask.

`lnplugin.sqlite` holds webhook secrets and preimages, so the directory lnplugin
creates is 0700 and every file it creates is 0600, set explicitly rather than
left to the process umask. SQLite gives a database's -wal and -shm files the
mode of the database file itself, so creating that file 0600 before SQLite
opens it covers them too. An operator's existing directory is never chmod'ed
(it may be shared on purpose); a group- or world-accessible one gets one
warning per process instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import os
import pwd
import re
import stat
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
_warned: set[Path] = set()
STORE_FILE = "lnplugin.sqlite"
# How every refusal of the data dir begins: the setting, named as `config` names one.
BAD_DATA_DIR = "invalid setting data_dir (--data-dir / LNPLUGIN_DATA_DIR)"


class DataDirError(Exception):
    """The data dir cannot be created or used; the message is one line naming it."""


def ensure_dir(path: Path) -> None:
    """Create `path` (and missing parents) 0700. Raises `DataDirError`."""
    path = Path(path)
    try:
        if not path.is_dir():
            path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            os.chmod(path, DIR_MODE)  # mkdir's mode is filtered through the umask
    except OSError as exc:
        raise DataDirError(
            f"{BAD_DATA_DIR}: cannot create {path}: "
            f"{exc.strerror or exc}; choose a directory this user can create and write"
        ) from None


def check_reachable(path: Path) -> None:
    """Raise `DataDirError` when `path` exists but this user cannot look inside
    it, or is a file.

    Why: a data dir owned by the service user (`/var/lib/lnplugin`, 0700)
    and named through `LNPLUGIN_DATA_DIR` or the config file, not the flag
    (which click checks), made every command that reads the store die on a
    PermissionError traceback when run as another user. A data dir that
    does not exist yet is fine here: the commands that create one do, and
    the others say there is no store."""
    try:
        os.stat(Path(path) / STORE_FILE)
    except PermissionError as exc:
        raise DataDirError(
            f"{BAD_DATA_DIR}: cannot read {path} "
            f"as uid {os.geteuid()} ({exc.strerror}); run as the user that owns it, or "
            "choose a directory this user can create and write"
        ) from None
    except NotADirectoryError:
        if Path(path).exists():  # a file where the directory should be
            raise DataDirError(f"{BAD_DATA_DIR}: {path} is a file, not a directory") from None
    except OSError:
        return  # absent: the command says so in its own words


def check_not_root_in_anothers(path: Path) -> None:
    """Raise `DataDirError` when root runs lnplugin on a data dir another user owns.

    Why: the deployed data dir is the service user's (`/var/lib/lnplugin`,
    owned by `lnplugin`), and `sudo lnplugin token create --data-dir ...`
    (for `sudo -u lnplugin`) made the store, the dev node's key or a WAL file
    as root, 0600: the service, which cannot open them, then stopped at its
    next start. Anyone else creates files as the user the data dir is shared
    with on purpose, so only root is refused.

    The store's owner decides when there is one, the directory's otherwise: a
    store root already owns is served as root (`docker run --user 0` on a
    volume the image made for uid 10001, a unit without `User=`), and its
    own commands there make nothing its service could not open; refusing them
    stopped that deployment at its first start after an upgrade, and running
    it as the directory's owner instead cannot open the store at all."""
    if os.geteuid() != 0:
        return
    try:
        owner = _store_or_dir_owner(Path(path))
    except OSError:
        return  # not there (yet): what root creates is root's own data dir
    if owner == 0:
        return
    try:
        name, sudo = (pwd.getpwuid(owner).pw_name,) * 2
    except KeyError:  # no name here (a uid from a container or another host): sudo's #uid
        name, sudo = str(owner), f"'#{owner}'"
    raise DataDirError(
        f"{BAD_DATA_DIR}: {path} belongs to "
        f"{name} (uid {owner}), and files made in it as root would be root's, which that "
        f"user cannot open; run this as {name} (sudo -u {sudo} ...)"
    )


def _store_or_dir_owner(path: Path) -> int:
    """The uid of `path`'s store (`STORE_FILE`), or of `path` when it has none."""
    try:
        return os.stat(path / STORE_FILE).st_uid
    except FileNotFoundError:
        return os.stat(path).st_uid


def warn_if_open(path: Path) -> None:
    """Warn (once per process) when the data dir is open to group or others;
    `lnplugin serve` and the plugin call it, one-shot commands stay quiet."""
    try:
        mode = stat.S_IMODE(Path(path).stat().st_mode)
    except OSError:
        return
    if mode & 0o077 and path not in _warned:
        _warned.add(path)
        log.warning(
            "data dir %s is readable by group or others (mode %o) and holds secrets; "
            "consider chmod 700 %s",
            path,
            mode,
            path,
        )


def private_file(path: Path) -> None:
    """Create `path` 0600 if missing; tighten it to 0600 if it is looser.

    Raises OSError when the file cannot be created or opened for writing."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def private_database(path: Path) -> None:
    """`private_file` for an SQLite database and the -wal/-shm files it already has."""
    private_file(path)
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.exists():
            private_file(side)


# Held (flock) by the process that serves the data dir: `lnplugin serve`, the
# CLN plugin (`service.lock_data_dir`).
LOCK_FILE = "lnplugin.lock"
# Captured TLV records the store could not take yet (`store.journal`).
RECORDS_JOURNAL = "htlc-records.jsonl"
# Changed by every token revocation (`store.revocations`).
TOKEN_REVOCATIONS = "token-revocations"

# The files lnplugin and its dev node keep in a data dir; an export or a
# backup written over one of them would destroy the store it was read from.
_OWN_FILES = (
    STORE_FILE,
    "devnode.sqlite",
    "node.key",
    LOCK_FILE,
    RECORDS_JOURNAL,
    TOKEN_REVOCATIONS,
)
_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def owned_file(data_dir: Path, path: Path) -> bool:
    """Whether `path` (after links) is one of the files lnplugin keeps in
    `data_dir`: a store, its -wal/-shm/-journal, the dev node's key, the lock,
    the records journal, the revocation mark."""
    try:
        target = Path(path).resolve()
        home = Path(data_dir).resolve()
    except (OSError, RuntimeError):
        return False
    if target.parent != home:
        return False
    return any(target.name == own + side for own in _OWN_FILES for side in _SIDE_FILES)


def process_alive(pid: int) -> bool:
    """Whether a process `pid` exists: signal 0 reaches it, or is refused
    (another user's). No process can have a pid too large for the call."""
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except (OSError, OverflowError):
        return False
    return True


def lock_holder(data_dir: Path) -> str | None:
    """The pid the data dir's lock file names while another process holds its
    lock (serves the data dir); None when none does, or this process does.

    The flock decides, not the pid: the kernel drops it with its process, so
    a lock file a dead server left behind (its pid perhaps reused since)
    never counts, and a server in another pid namespace (a container on the
    same data dir) still does. The probe holds a shared lock for an instant;
    a server starting in that instant is refused as if another served."""
    try:
        handle = open(Path(data_dir) / LOCK_FILE)  # noqa: SIM115 - closed below
    except OSError:
        return None
    with handle:
        try:
            pid = (handle.read().split() or ["?"])[0]
            if pid == str(os.getpid()):
                return None
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)  # closing drops it
        except BlockingIOError:
            return pid
        except (OSError, UnicodeDecodeError):
            return None
    return None


_PARTIAL = re.compile(r"\.partial-(\d+)(-journal)?$")


@contextlib.contextmanager
def written_in_whole(target: Path) -> Iterator[Path]:
    """A file beside `target`, created 0600, for the block to fill; renamed
    over `target` once the block ends without error (fsynced, and the rename
    made durable), removed otherwise. A crash or a full disk leaves the old
    file or none, never a torn one under the name asked for (a backup, an
    export: both hold what the store holds).

    What writers killed before their rename left beside `target` (the
    temporary file, and the journal SQLite may keep beside it) is removed
    first, unless their process still runs."""
    for path in target.parent.glob(f".{glob.escape(target.name)}.partial-*"):
        found = _PARTIAL.search(path.name)
        if found is not None and not process_alive(int(found.group(1))):
            with contextlib.suppress(OSError):
                path.unlink()
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    os.close(os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE))
    try:
        yield partial
        with open(partial, "rb") as done:
            os.fsync(done.fileno())
        os.replace(partial, target)
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        partial.unlink(missing_ok=True)
