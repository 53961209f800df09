"""The node side of `lnplugin-cln`: its options, its settings, its hook.

CLN never shows keysend TLV records in `listinvoices` (docs/protocols.md#cln-keysend-invoices).
The only reliable place to see them is the raw onion payload handed to the
`htlc_accepted` hook, so the plugin hooks it and `on_htlc_accepted` stores
the custom records by payment hash (`lnplugin.store.captured_records`); the
follower joins them to the settled invoice. How the plugin process runs
(pyln's loop, the service, the HTTP server) is `lnplugin.run.cln_plugin`.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lnplugin.config import ConfigError, Settings, load_settings
from lnplugin.nodes.cln.tlv import TlvError, custom_records
from lnplugin.store import Store, captured_records
from lnplugin.store.db import is_lock_contention

log = logging.getLogger("lnplugin.cln_plugin")

# The hook waits at most this long for the SQLite write lock (the follower may
# hold it for a batch, another process for an export). Past it the records are
# appended to the records journal on disk and handed to the store's deferred
# writes (`captured_records.capture_later`), and the HTLC continues: a payment
# is never held up by our bookkeeping, its records are still stored before
# anything else this process writes, its settlement included, and a plugin
# killed before the lock frees replays them when it starts again.
HOOK_BUSY_TIMEOUT_MS = 1000
CONTINUE: dict[str, str] = {"result": "continue"}

# (name, default, type, description): the plugin's CLN options. A None
# default declares none: lightningd then passes the option only when it is
# set, and the `LNPLUGIN_*` variable beneath it decides otherwise.
OPTIONS: tuple[tuple[str, str | int | None, str, str], ...] = (
    (
        "lnplugin-data-dir",
        "",
        "string",
        "lnplugin data directory (SQLite store). Default: <lightning-dir>/lnplugin-data",
    ),
    ("lnplugin-host", "127.0.0.1", "string", "Address the lnplugin HTTP API listens on."),
    ("lnplugin-port", 8080, "int", "Port the lnplugin HTTP API listens on (0: any free port)."),
    (
        "lnplugin-network",
        "",
        "string",
        "Expected network; the plugin disables itself if CLN runs on another. "
        "Default: CLN's own network.",
    ),
    (
        "lnplugin-public-url",
        "",
        "string",
        "URL payers reach the lnplugin HTTP API at; turns on Lightning Addresses and LNURL-pay.",
    ),
    (
        "lnplugin-rss-payment-domain",
        "",
        "string",
        "Comma-separated domains whose rss::payment boost records are fetched. Default: none.",
    ),
    (
        "lnplugin-zaps",
        None,
        "bool",
        "NIP-57 zaps on the Lightning Addresses (true/false). Default: false.",
    ),
    (
        "lnplugin-zap-relay-allow",
        "",
        "string",
        "Comma-separated CIDRs a zap request's relays may be reached at although "
        "loopback or private. Default: none.",
    ),
)


class PluginConfigError(Exception):
    """The plugin cannot run with these options; the message says why."""


def settings_from_init(
    options: Mapping[str, Any],
    configuration: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from CLN's `init`: the node's own socket and network, our options.

    `LNPLUGIN_*` environment variables still apply beneath the options, as
    in standalone mode.
    """
    lightning_dir = Path(str(configuration["lightning-dir"]))
    network = configuration.get("network")
    wanted = str(options.get("lnplugin-network") or "") or None
    if wanted is not None and network is not None and wanted != network:
        raise PluginConfigError(
            f"lnplugin-network={wanted} but Core Lightning runs on {network}; plugin disabled"
        )
    port = options.get("lnplugin-port")
    flags: dict[str, Any] = {
        "node": "cln",
        "cln_socket": str(lightning_dir / str(configuration["rpc-file"])),
        "network": network or wanted,
        # Not `lnplugin`: lightningd runs plugins in lightning-dir, and a directory
        # named like the package there would shadow it under `python -m`.
        "data_dir": str(options.get("lnplugin-data-dir") or "")
        or str(lightning_dir / "lnplugin-data"),
        "host": str(options.get("lnplugin-host") or "") or None,
        "port": int(port) if port is not None and port != "" else None,
        "public_url": str(options.get("lnplugin-public-url") or "") or None,
        "rss_payment_domain": str(options.get("lnplugin-rss-payment-domain") or "") or None,
        # A bool, or its text from a lightningd that passes options as strings.
        "zaps": _unset_if_blank(options.get("lnplugin-zaps")),
        "zap_relay_allow": str(options.get("lnplugin-zap-relay-allow") or "") or None,
    }
    try:
        return load_settings(flags, environ=environ)
    except (ConfigError, ValueError) as exc:
        raise PluginConfigError(f"{exc}; plugin disabled") from None


def _unset_if_blank(value: Any) -> Any:
    return None if value is None or value == "" else value


def is_forward(onion: Mapping[str, Any]) -> bool:
    """Whether lightningd will forward this HTLC rather than take it.

    The onion names the next hop by channel (`short_channel_id`) or, in a
    blinded route, by node (`next_node_id`); a payment to this node has
    neither.
    """
    return "short_channel_id" in onion or "next_node_id" in onion


def on_htlc_accepted(
    store: Store | None, onion: Mapping[str, Any], htlc: Mapping[str, Any]
) -> dict[str, str]:
    """Capture an incoming payment's custom TLV records; ALWAYS continue."""
    capture(store, onion, htlc)
    return CONTINUE


def capture(store: Store | None, onion: Mapping[str, Any], htlc: Mapping[str, Any]) -> None:
    """Store the custom TLV records of an HTLC paying this node.

    Forwards (the onion names a next channel or node) are not ours, nor an
    onion without `type`: lightningd could not parse its payload (an unknown
    even record it was not told to accept, say) and fails the HTLC once the
    hooks are done, so nobody paid for its records. Parse errors
    and store errors are logged, never raised: failing or holding an HTLC
    over our bookkeeping would cost the operator a payment. Replays (CLN
    re-sends unresolved HTLCs at startup) merge to the same row. Called for
    every HTLC answered `continue`, and by the hold-invoice code for each
    part it takes, so a hold invoice keeps its records as on lnd.
    """
    try:
        if store is None or is_forward(onion) or onion.get("type") != "tlv":
            return
        records = custom_records(str(onion.get("payload") or ""))
        if not records:
            return
        payment_hash = str(htlc["payment_hash"]).lower()
        store.limit_write_wait(HOOK_BUSY_TIMEOUT_MS)
        try:
            with store.transaction() as tx:
                captured_records.capture_in(tx, payment_hash, records)
        except sqlite3.OperationalError as exc:
            if not is_lock_contention(exc):
                raise
            # lightningd settles the payment once we answer, and does not ask
            # again: the records must be on disk before we do.
            kept = captured_records.capture_later(store, payment_hash, records)
            log.warning(
                "htlc_accepted: store busy for %d ms; TLV records for %s queued, "
                "stored when the write lock frees%s; continuing",
                HOOK_BUSY_TIMEOUT_MS,
                payment_hash,
                " (kept on disk until then)" if kept else "",
            )
    except TlvError as exc:
        log.warning("htlc_accepted: unreadable onion payload (%s); continuing", exc)
    except Exception as exc:
        log.error(
            "htlc_accepted: could not store TLV records for %s (%s); continuing",
            htlc.get("payment_hash"),
            exc,
        )
