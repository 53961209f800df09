"""`lnplugin-cln`: lnplugin running inside Core Lightning as a plugin.

Why a plugin at all: CLN never shows keysend TLV records in `listinvoices`
(PROTOCOLS.md B.8, F). The only reliable place to see them is the raw onion
payload handed to the `htlc_accepted` hook, so lnplugin hooks it, stores
the custom records by payment hash, and the follower joins them to the
settled invoice. Everything else is standalone mode unchanged: the same
`Service` (store, ClnNode over the node's own `lightning-rpc`, follower) and
the same waitress server, run on background threads while pyln's loop owns
the main thread.

Load it with `plugin=$(which lnplugin-cln)` (or `important-plugin=`) in the
CLN config, or at runtime:
`lightning-cli plugin start $(which lnplugin-cln) lnplugin-port=8080`.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lnplugin.cln_tlv import TlvError, custom_records
from lnplugin.config import ConfigError, Settings, http_url, load_settings
from lnplugin.follower import capture_htlc_records
from lnplugin.service import Service, StartupRefused
from lnplugin.store import Store

log = logging.getLogger("lnplugin.cln_plugin")

# The hook waits at most this long for the SQLite write lock (the follower may
# hold it for a batch). Past it the records are logged as lost and the HTLC
# continues: a payment is never held up by our bookkeeping.
HOOK_BUSY_TIMEOUT_MS = 1000
CONTINUE: dict[str, str] = {"result": "continue"}

# (name, default, type, description): the plugin's CLN options.
OPTIONS: tuple[tuple[str, str | int, str, str], ...] = (
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
        "port": int(port) if port not in (None, "") else None,
    }
    try:
        return load_settings(flags, environ=environ)
    except (ConfigError, ValueError) as exc:
        raise PluginConfigError(f"{exc}; plugin disabled") from None


def on_htlc_accepted(
    store: Store | None, onion: Mapping[str, Any], htlc: Mapping[str, Any]
) -> dict[str, str]:
    """Capture an incoming payment's custom TLV records; ALWAYS continue.

    Forwards (the onion names a next channel) are not ours. Parse errors
    and store errors are logged, never raised: failing or holding an HTLC
    over our bookkeeping would cost the operator a payment. Replays (CLN
    re-sends unresolved HTLCs at startup) merge to the same row.
    """
    try:
        if store is None or "short_channel_id" in onion:
            return CONTINUE
        records = custom_records(str(onion.get("payload") or ""))
        if not records:
            return CONTINUE
        store.limit_write_wait(HOOK_BUSY_TIMEOUT_MS)
        capture_htlc_records(store, str(htlc["payment_hash"]).lower(), records)
    except TlvError as exc:
        log.warning("htlc_accepted: unreadable onion payload (%s); continuing", exc)
    except Exception as exc:
        log.error(
            "htlc_accepted: could not store TLV records for %s (%s); continuing",
            htlc.get("payment_hash"),
            exc,
        )
    return CONTINUE


class PluginRuntime:
    """The service and its HTTP server inside lightningd's lifecycle."""

    def __init__(self) -> None:
        self.service: Service | None = None
        self.server: Any = None
        self.url: str | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def store(self) -> Store | None:
        return self.service.store if self.service is not None else None

    def start(self, settings: Settings, say: Callable[[str], None]) -> None:
        """Open the store and bind the port now (errors disable the plugin);
        reach the node and serve on a background thread, so `init` answers at once."""
        from lnplugin.server import make_server

        service = Service.build(settings)
        try:
            service.claim_data_dir()
        except StartupRefused as exc:
            service.store.close()
            raise PluginConfigError(f"{exc}; plugin disabled") from None
        try:
            server = make_server(service, settings)
        except OSError as exc:
            service.stop()
            raise PluginConfigError(
                f"cannot listen on {settings.host}:{settings.port}: {exc}"
            ) from None
        self.service, self.server = service, server
        port = getattr(server, "effective_port", settings.port)
        self.url = settings.public_url or http_url(settings.host, port)
        say(f"lnplugin cln node listening on {self.url}")
        # Never put a token in lightningd's log: logs are copied and shipped.
        # The operator makes one with the CLI against the same data dir.
        say(
            "create an API token with: lnplugin token create --scope admin "
            f"--data-dir {settings.data_dir}"
        )
        self._thread = threading.Thread(target=self._run, name="lnplugin-serve", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.service is not None
        try:
            self.service.start()
        except StartupRefused as exc:  # the node turned out to be on another network
            log.error("%s", exc)
            self.stop()  # release the port and the data dir: nothing will serve them
            return
        try:
            self.server.run()
        except Exception:
            if not self._stopped.is_set():
                log.exception("lnplugin HTTP server stopped")

    def status(self) -> dict[str, Any]:
        if self.service is None or self._stopped.is_set():
            return {"running": False}
        from lnplugin.store import htlc_records

        with self.service.store.snapshot() as conn:
            captured = htlc_records.count(conn)
        return {
            "running": True,
            "url": self.url,
            "data_dir": str(self.service.settings.data_dir),
            "follower": self.service.follower.status.as_dict(),
            "captured_htlc_records": captured,
        }

    def stop(self) -> None:
        """Close the server, then the follower and store (idempotent)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.server is not None:
            self.server.close()
        if self.service is not None:
            self.service.stop()


def build_plugin(runtime: PluginRuntime) -> Any:
    """The pyln `Plugin`: options, `init`, the hook, `shutdown`, one status command.

    Built on demand rather than at import: pyln's `Plugin()` takes over the
    root logger (and stdout inside lightningd), which importers must not get.
    """
    from pyln.client import Plugin

    plugin = Plugin()
    for name, default, opt_type, description in OPTIONS:
        plugin.add_option(name, default, description, opt_type=opt_type)

    @plugin.init()
    def init(
        options: dict[str, Any], configuration: dict[str, Any], plugin: Any, **_: Any
    ) -> dict[str, str] | None:
        logging.getLogger("lnplugin").setLevel(logging.INFO)
        try:
            settings = settings_from_init(options, configuration)
            runtime.start(settings, lambda line: plugin.log(line, level="info"))
        except PluginConfigError as exc:
            plugin.log(str(exc), level="broken")
            return {"disable": str(exc)}
        except Exception as exc:  # disable rather than crash (and, if important, stop CLN)
            log.exception("lnplugin failed to start")
            runtime.stop()
            return {"disable": f"lnplugin failed to start: {exc}"}
        return None

    @plugin.hook("htlc_accepted", after=["keysend"])
    def htlc_accepted(onion: dict[str, Any], htlc: dict[str, Any], **_: Any) -> dict[str, str]:
        return on_htlc_accepted(runtime.store, onion, htlc)

    @plugin.method("lnplugin-status")
    def lnplugin_status(**_: Any) -> dict[str, Any]:
        """lnplugin's URL, follower state and captured HTLC record count."""
        return runtime.status()

    @plugin.subscribe("shutdown")
    def shutdown(**_: Any) -> None:
        runtime.stop()
        sys.exit(0)

    return plugin


def main() -> None:
    runtime = PluginRuntime()
    plugin = build_plugin(runtime)
    try:
        plugin.run()  # returns when lightningd closes our stdin
    finally:
        runtime.stop()


if __name__ == "__main__":
    main()
