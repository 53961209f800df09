"""`lnplugin-cln`: lnplugin running inside Core Lightning as a plugin.

Why a plugin at all: CLN never shows keysend TLV records in `listinvoices`;
the plugin sees them in the `htlc_accepted` hook (the node-side logic, with
the plugin's options and settings, is `lnplugin.nodes.cln.plugin`). This
module is how the plugin process runs, and otherwise it is standalone mode
unchanged: the same `Service` (store, ClnNode over the node's own
`lightning-rpc`, follower) and the same uvicorn server, run on background
threads while pyln's loop owns the main thread.

Load it with `plugin=$(which lnplugin-cln)` (or `important-plugin=`) in the
CLN config, or at runtime:
`lightning-cli plugin start $(which lnplugin-cln) lnplugin-port=8080`.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from lnplugin.config import Settings, env_typos, http_url
from lnplugin.nodes.cln.hold import ClnHoldNode
from lnplugin.nodes.cln.plugin import (
    OPTIONS,
    PluginConfigError,
    on_htlc_accepted,
    settings_from_init,
)
from lnplugin.service import Service, StartupRefused, unusable_errors
from lnplugin.store import Store, captured_records

log = logging.getLogger("lnplugin.cln_plugin")


class PluginRuntime:
    """The service and its HTTP server inside lightningd's lifecycle."""

    def __init__(self) -> None:
        self.service: Service | None = None
        self.node: ClnHoldNode | None = None
        self.server: Any = None
        self.url: str | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def store(self) -> Store | None:
        return self.service.store if self.service is not None else None

    def start(self, settings: Settings, say: Callable[[str], None], startup: bool = True) -> None:
        """Open the store and bind the port now (errors disable the plugin);
        reach the node and serve on a background thread, so `init` answers at once.

        `startup`: `init`'s own flag, true when lightningd is starting (and
        replays the HTLCs no plugin answered right after), false for a plugin
        started into a running lightningd (which failed the HTLCs this
        plugin's last run held when it stopped): see `expect_replays`."""
        from lnplugin.run.server import freeze_startup_objects, make_server

        # The plugin sees every HTLC, so it can hold them: the node it serves
        # has hold invoices, which standalone mode's `ClnNode` has not.
        node = ClnHoldNode.from_settings(settings)
        service = Service.build(settings, node)
        node.attach(service.store)
        self.node = node
        try:
            service.claim_data_dir()
        except StartupRefused as exc:
            service.store.close()
            raise PluginConfigError(f"{exc}; plugin disabled") from None
        try:
            server = make_server(service, settings)
        except (OSError, StartupRefused) as exc:
            service.stop()
            raise PluginConfigError(
                f"cannot listen on {settings.host}:{settings.port}: {exc}"
            ) from None
        self.service, self.server = service, server
        listening = http_url(settings.host, server.effective_port)
        service.announce(listening)
        self.url = settings.public_url or listening
        say(f"lnplugin cln node listening on {listening}")
        if settings.public_url and settings.public_url != listening:
            say(f"payers reach it at {settings.public_url}")
        # Never put a token in lightningd's log: logs are copied and shipped.
        # The operator makes one with the CLI against the same data dir.
        say(
            "create an API token with: lnplugin token create --scope admin "
            f"--data-dir {settings.data_dir}"
        )
        try:
            node.expect_replays(startup)
        except Exception:  # bookkeeping: never a reason to disable the plugin
            log.exception("could not check the held hold invoices")
        freeze_startup_objects()  # as `lnplugin serve` does, for the same reason
        self._thread = threading.Thread(target=self._run, name="lnplugin-serve", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.service is not None
        # A network check postponed at start that fails later stops the plugin's
        # server the same way (on a thread of its own: `stop` joins the service's).
        self.service.on_refused = lambda reason: threading.Thread(
            target=self.stop, name="lnplugin-refused", daemon=True
        ).start()
        try:
            self.service.start()
        except StartupRefused as exc:  # the node turned out to be on another network
            log.error("%s", exc)
            self.stop()  # release the port and the data dir: nothing will serve them
            return
        if self._stopped.is_set():
            return  # `shutdown` came while the service started: it is stopped
        try:
            self.server.run()
        except Exception:
            if not self._stopped.is_set():
                log.exception("lnplugin HTTP server stopped")

    def status(self) -> dict[str, Any]:
        if self.service is None or self._stopped.is_set():
            return {"running": False}
        with self.service.store.snapshot() as conn:
            captured = captured_records.count(conn)
        return {
            "running": True,
            "url": self.url,
            "data_dir": str(self.service.settings.data_dir),
            "follower": self.service.follower.status.as_dict(),
            "captured_htlc_records": captured,
            # Captured while the store was busy, not yet written: see docs/cln.md.
            "queued_htlc_records": self.service.store.deferred_writes,
        }

    def stop(self) -> None:
        """Close the server, then the follower and store (idempotent)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.service is not None:
            self.service.before_shutdown()  # end open streams: the server need not wait
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
            # lightningd's log takes what the plugin writes; LNPLUGIN_LOG_LEVEL
            # still decides how much of it that is.
            logging.getLogger("lnplugin").setLevel(settings.log_level.upper())
            for line in env_typos():
                plugin.log(line, level="warn")
            runtime.start(
                settings,
                lambda line: plugin.log(line, level="info"),
                startup=bool(configuration.get("startup", True)),
            )
        except PluginConfigError as exc:
            plugin.log(str(exc), level="broken")
            return {"disable": str(exc)}
        except unusable_errors() as exc:  # a data dir, store or node setting that cannot work
            runtime.stop()
            plugin.log(f"{exc}; plugin disabled", level="broken")
            return {"disable": f"{exc}; plugin disabled"}
        except Exception as exc:  # disable rather than crash (and, if important, stop CLN)
            log.exception("lnplugin failed to start")
            runtime.stop()
            return {"disable": f"lnplugin failed to start: {exc}"}
        return None

    def htlc_accepted(onion: dict[str, Any], htlc: dict[str, Any], request: Any, **_: Any) -> None:
        """Answered later for a hold invoice's HTLC (settle or cancel), at
        once (continue) for everything else. A background hook: an HTLC held
        here does not stop lightningd from calling it for the next one."""
        node = runtime.node
        try:
            if node is not None and node.on_htlc(onion, htlc, request.set_result):
                return
        except Exception:
            log.exception("htlc_accepted: hold invoice check failed; continuing")
        request.set_result(on_htlc_accepted(runtime.store, onion, htlc))

    plugin.add_hook("htlc_accepted", htlc_accepted, background=True, after=["keysend"])

    @plugin.method("lnplugin-status")
    def lnplugin_status(**_: Any) -> dict[str, Any]:
        """lnplugin's URL, follower state and captured HTLC record count."""
        return runtime.status()

    @plugin.subscribe("shutdown")
    def shutdown(**_: Any) -> None:
        try:
            runtime.stop()
        except Exception:  # lightningd asked us to go: go, whatever failed
            log.exception("lnplugin did not stop cleanly")
        sys.exit(0)

    return plugin


def main() -> None:
    from lnplugin.run.server import cap_malloc_arenas

    cap_malloc_arenas()  # before any thread exists, as `lnplugin serve` does
    runtime = PluginRuntime()
    plugin = build_plugin(runtime)
    try:
        plugin.run()  # returns when lightningd closes our stdin
    finally:
        runtime.stop()


if __name__ == "__main__":
    main()
