"""Which TCP sockets a process listens on, and which files it holds open, from /proc.

Why: `lnplugin status` must not take whatever answers on a port for the
server of its data dir. The lock file names the serving process's pid; a
socket listening on the port that this very process holds, and the data
dir's lock file among its open files, tell it is that server, whatever
version it runs (an older one notes no URL in the lock file). The simulators
use it too, to say which port they got when asked for port 0.

Linux only, and only for a process this user may look into (its own, or any
as root); elsewhere the answer is None: "cannot tell", never "yes".
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

_PROC = Path("/proc")
_LISTEN = "0A"  # the TCP state column of /proc/net/tcp: TCP_LISTEN


def _socket_inodes(pid: int | str) -> set[str] | None:
    fds = _PROC / str(pid) / "fd"
    try:
        names = os.listdir(fds)
    except OSError:
        return None
    inodes = set()
    for name in names:
        try:
            target = os.readlink(fds / name)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _address(hex_address: str) -> str:
    """/proc/net/tcp{,6} print an address as 32-bit words in host byte order."""
    raw = b"".join(
        int(hex_address[i : i + 8], 16).to_bytes(4, sys.byteorder)
        for i in range(0, len(hex_address), 8)
    )
    return str(ipaddress.ip_address(raw))


def listening(pid: int | str = "self") -> set[tuple[str, int]] | None:
    """(address, port) of each TCP socket process `pid` listens on, as this
    process's network namespace sees them (a socket in another namespace is
    not reachable at the same address from here); None when /proc cannot tell."""
    inodes = _socket_inodes(pid)
    if inodes is None:
        return None
    found = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "self" / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN or fields[9] not in inodes:
                continue
            address, port = fields[1].split(":")
            found.add((_address(address), int(port, 16)))
    return found


def holds_open(pid: int | str, path: Path) -> bool:
    """Whether process `pid` has the file at `path` open (False when /proc cannot tell)."""
    try:
        wanted = os.stat(path)
        names = os.listdir(_PROC / str(pid) / "fd")
    except OSError:
        return False
    for name in names:
        try:
            st = os.stat(_PROC / str(pid) / "fd" / name)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (wanted.st_dev, wanted.st_ino):
            return True
    return False


def accepts_at(sockets: set[tuple[str, int]], addresses: set[str], port: int) -> bool:
    """Whether one of `sockets` takes connections to `port` at one of
    `addresses` (bound to one of them, or to a wildcard address)."""
    for address, bound_port in sockets:
        if bound_port != port:
            continue
        ip = ipaddress.ip_address(address)
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        if ip.is_unspecified or address in addresses or str(mapped) in addresses:
            return True
    return False
