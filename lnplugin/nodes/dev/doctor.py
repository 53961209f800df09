"""`lnplugin doctor` for the embedded dev node: what it is, and its key file.

The dev node has no connection to check, so what can go wrong is the
operator's expectation (a dev node settles nothing real, least of all on
mainnet) and its key file (unreadable, damaged, or open to other users).
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from lnplugin.nodes.checks import Check

if TYPE_CHECKING:
    from lnplugin.config import Settings


def checks(settings: Settings) -> list[Check]:
    """The dev node's network and its `node.key`, one line each."""
    import coincurve

    from lnplugin.nodes.dev.node import KEY_FILE

    network = settings.effective_network
    out: list[Check] = []
    if network == "bitcoin":
        out.append(
            Check(
                "dev node",
                "warn",
                "the embedded dev node on --network bitcoin mints lnbc invoices that no wallet "
                "can pay: it is not connected to any Lightning network (use --node lnd or cln)",
            )
        )
    else:
        out.append(
            Check(
                "dev node",
                "ok",
                f"embedded, {network}: payments are simulated (lnplugin dev pay); "
                "--node lnd or cln for a real node",
            )
        )
    key = settings.data_dir / KEY_FILE
    if not key.exists():
        out.append(Check("node key", "ok", f"none yet; the first start creates {key} (0600)"))
        return out
    mode = stat.S_IMODE(key.stat().st_mode)
    try:
        secret = bytes.fromhex(key.read_text().strip())
        pubkey = coincurve.PrivateKey(secret).public_key.format().hex()
    except OSError as exc:
        out.append(
            Check("node key", "fail", f"cannot read {key} as uid {os.getuid()}: {exc.strerror}")
        )
        return out
    except ValueError:
        out.append(
            Check(
                "node key",
                "fail",
                f"{key} is not a hex secp256k1 key: move it aside to make a new dev node "
                "(its invoices can then no longer be paid)",
            )
        )
        return out
    if mode & 0o077:
        out.append(Check("node key", "warn", f"{key} mode {mode:04o}: chmod 600 {key}"))
    else:
        out.append(Check("node key", "ok", f"{key} (mode {mode:04o}), node id {pubkey[:16]}…"))
    return out
