"""Drive `lnplugin-cln` the way lightningd does, for tests without a node.

lightningd starts a plugin as a child process with `LIGHTNINGD_PLUGIN=1`,
talks JSON-RPC 2.0 over its stdin/stdout (messages end with "\\n\\n"), calls
`getmanifest`, then `init` with the option values and a `configuration`
naming its `lightning-dir` and `rpc-file`, then calls hooks and sends
notifications. `PluginDriver` does exactly that against a `ClnSim`, so the
plugin reaches the simulator's socket as it would reach lightningd's.

Hook calls carry params shaped like the real v26.06.6 capture
(tests/fixtures/cln/hooks_b.json): the raw hop payload comes from
`sim.htlc_payload(hash)`, and the amounts and payment secret are read back
out of it; a payload lightningd could not parse (not TLV, or an even type
not accepted) has no `type` and no parsed fields, as lightningd sends it.
Every answer must be `{"result": "continue"}`; anything else
raises. Sent hooks are remembered so `restart()` can replay them, as
lightningd replays unresolved HTLCs at startup.

A plugin that dies with requests pending has them answered as lightningd
answers them (`destroy_plugin` in lightningd/plugin.c): the error
PLUGIN_TERMINATED (-4). lightningd then goes on as if the plugin had said
`continue`, so a held `htlc_accepted` for a hash the node has no invoice
for is failed, and never replayed. `start(startup=False)` is a plugin
started into a running lightningd (`lightning-cli plugin start`): `init`
says so, and nothing is replayed; `restart()` is lightningd starting again.

    with PluginDriver(sim, data_dir) as plugin:
        plugin.htlc_accepted(payment_hash)
        plugin.url  # the plugin's HTTP API
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lnplugin.nodes.cln.tlv import parse_onion_payload
from lnplugin_sim.cln_sim import PEER_ID, ClnSim


def default_command() -> tuple[str, ...]:
    """The installed `lnplugin-cln` console script (what operators load), if present.

    Else the module, with `-P` so the working directory (lightningd runs
    plugins in lightning-dir) is not put on sys.path.
    """
    script = Path(sys.executable).with_name("lnplugin-cln")
    if script.exists():
        return (str(script),)
    return (sys.executable, "-P", "-m", "lnplugin.run.cln_plugin")


CALL_TIMEOUT = 30.0  # seconds: a liveness bound, not a timing assertion
# The even types of a final hop's payload lightningd knows (BOLT 4): amount,
# CLTV, short_channel_id, payment_data, encrypted_recipient_data,
# current_path_key, payment_metadata, total_amount_msat.
KNOWN_EVEN_TYPES = frozenset({2, 4, 6, 8, 10, 12, 16, 18})
CONTINUE = {"result": "continue"}
# lightningd's answer to a request a plugin died without answering
# (common/jsonrpc_errors.h, lightningd/plugin.c `plugin_terminated_fail_req`).
PLUGIN_TERMINATED = {"code": -4, "message": "Plugin terminated before replying to RPC call."}


class Reply:
    """The answer to a request sent with `call_later`, when it comes."""

    def __init__(self, method: str, waiting: queue.Queue[dict[str, Any]], logs: list[str]) -> None:
        self.method, self.waiting, self.logs = method, waiting, logs

    def result(self, timeout: float = CALL_TIMEOUT) -> Any:
        method, waiting = self.method, self.waiting
        try:
            reply = waiting.get(timeout=timeout)
        except queue.Empty:
            raise PluginError(f"no answer to {method} within {timeout}s") from None
        if "error" in reply:
            raise PluginError(f"{method} failed: {reply['error']}; logs: {self.logs[-20:]}")
        return reply["result"]


class PluginError(AssertionError):
    """The plugin broke the protocol, answered an error, or did not continue an HTLC."""


class PluginDriver:
    """One plugin process under a simulated lightningd."""

    def __init__(
        self,
        sim: ClnSim,
        data_dir: str | os.PathLike[str],
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        options: Mapping[str, Any] | None = None,
        command: tuple[str, ...] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.sim = sim
        self.data_dir = Path(data_dir)
        self._token: str | None = None
        self.options: dict[str, Any] = {
            "lnplugin-data-dir": str(self.data_dir),
            "lnplugin-host": host,
            "lnplugin-port": port,
            **(options or {}),
        }
        self.command = command or default_command()
        self.env = {
            **os.environ,
            "LIGHTNINGD_PLUGIN": "1",
            "LIGHTNINGD_VERSION": sim.version,
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.manifest: dict[str, Any] = {}
        self.init_result: Any = None
        self.url = ""
        self.logs: list[str] = []  # every `log` notification and stderr line, all runs
        self.sent_hooks: list[dict[str, Any]] = []  # htlc_accepted params, for replay
        self._ids = itertools.count(1)
        self._pending: dict[str, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._htlc_ids = itertools.count(1)
        self.startup = True  # `init`'s flag: lightningd starting, not running already

    # ---------------------------------------------------------------- process
    @property
    def configuration(self) -> dict[str, Any]:
        """What lightningd passes in `init`, pointing at the simulator's socket."""
        socket_path = Path(self.sim.socket_path)
        return {
            "lightning-dir": str(socket_path.parent),
            "rpc-file": socket_path.name,
            "startup": self.startup,
            "network": self.sim.network,
            "feature_set": {
                "init": "08a0802a8a59a1",
                "node": "88a0802a8a59a1",
                "channel": "",
                "invoice": "02000002024100",
            },
            "torv3-enabled": False,
            "always_use_proxy": False,
        }

    def start(self, *, startup: bool = True) -> PluginDriver:
        """Spawn, `getmanifest`, `init`; learn the HTTP URL from `lnplugin-status`.

        `startup`: lightningd is starting (and replays what no plugin
        answered); False: the plugin is started into a running lightningd."""
        self.startup = startup
        self.proc = subprocess.Popen(
            list(self.command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(Path(self.sim.socket_path).parent),
            env=self.env,
        )
        threading.Thread(target=self._read_stdout, args=(self.proc,), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self.proc,), daemon=True).start()
        self.manifest = self.call("getmanifest", {"allow-deprecated-apis": False})
        options = {o["name"]: o.get("default") for o in self.manifest.get("options", [])}
        options.update(self.options)
        self.init_result = self.call(
            "init", {"options": options, "configuration": self.configuration}
        )
        if isinstance(self.init_result, dict) and "disable" in self.init_result:
            return self
        status = self.call("lnplugin-status", {})
        self.url = status["url"]
        return self

    def _read_stdout(self, proc: subprocess.Popen[bytes]) -> None:
        stdout = proc.stdout
        assert isinstance(stdout, io.BufferedReader)  # a pipe opened with the default buffering
        buf = b""
        with contextlib.suppress(OSError, ValueError):  # pipe closed under us
            while chunk := stdout.read1(65536):
                buf += chunk
                *messages, buf = buf.split(b"\n\n")
                for raw in messages:
                    if raw.strip():
                        self._dispatch(json.loads(raw))
        with self._lock:  # wake every caller still waiting: the plugin is gone
            for waiting in self._pending.values():
                waiting.put({"error": dict(PLUGIN_TERMINATED)})
            self._pending.clear()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message and ("result" in message or "error" in message):
            with self._lock:
                waiting = self._pending.pop(str(message["id"]), None)
            if waiting is not None:
                waiting.put(message)
            return
        if message.get("method") == "log":
            params = message.get("params") or {}
            entry = params.get("log", params)
            self.logs.append(f"{entry.get('level', 'info')}: {entry.get('message', '')}")

    def _read_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        with contextlib.suppress(OSError, ValueError):
            for line in proc.stderr:
                self.logs.append("stderr: " + line.decode(errors="replace").rstrip())

    def _send(self, message: dict[str, Any]) -> None:
        if self.proc is None or self.proc.stdin is None:
            raise PluginError("plugin not running")
        data = (json.dumps(message) + "\n\n").encode()
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise PluginError(f"plugin not running: {exc}; logs: {self.logs[-20:]}") from None

    def call(self, method: str, params: Any, timeout: float = CALL_TIMEOUT) -> Any:
        """A request as lightningd sends it (string ids, `cln:` prefix); its result."""
        return self.call_later(method, params).result(timeout)

    def call_later(self, method: str, params: Any) -> Reply:
        """Send a request without waiting for its answer (lightningd keeps
        calling a plugin while it holds an earlier hook's answer back)."""
        req_id = f"cln:{method}#{next(self._ids)}"
        waiting: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._lock:
            self._pending[req_id] = waiting
        self._send({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params})
        return Reply(method, waiting, self.logs)

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    # ---------------------------------------------------------------- hooks
    def hook_params(
        self, payment_hash: str, payload: str | None = None, *, htlc_id: int | None = None
    ) -> dict[str, Any]:
        """`htlc_accepted` params as lightningd sends them to a later plugin.

        `payload` defaults to what the simulator recorded for the payment.
        """
        payload = payload if payload is not None else self.sim.htlc_payload(payment_hash)
        if payload is None:
            raise PluginError(f"the simulator has no HTLC payload for {payment_hash}")
        fields = self._parsed(payload)
        forward = int.from_bytes((fields or {}).get(2, b""), "big")
        cltv = int.from_bytes((fields or {}).get(4, b""), "big")
        onion: dict[str, Any] = {"payload": payload}
        if fields is not None:
            # Only for a payload it parsed (`htlc_accepted_hook_serialize`);
            # one it did not is failed once the hooks are done.
            onion.update(type="tlv", forward_msat=forward, outgoing_cltv_value=cltv)
        if fields is not None and 8 in fields:
            onion["total_msat"] = int.from_bytes(fields[8][32:], "big")
            onion["payment_secret"] = fields[8][:32].hex()
        onion["next_onion"] = "00" * 1366
        onion["shared_secret"] = secrets.token_hex(32)
        expiry = cltv + 12
        return {
            "peer_id": PEER_ID,
            "onion": onion,
            "htlc": {
                "short_channel_id": "103x1x0",
                "id": htlc_id if htlc_id is not None else next(self._htlc_ids),
                "amount_msat": forward,
                "cltv_expiry": expiry,
                "cltv_expiry_relative": expiry - self.sim.blockheight,
                "payment_hash": payment_hash,
            },
        }

    def _parsed(self, payload: str) -> dict[int, bytes] | None:
        """The payload's records as lightningd reads them, or None when it
        cannot: not a TLV stream, or an unknown even type it was not told
        to accept (`accept-htlc-tlv-type`): "it's OK to be odd"."""
        try:
            fields = parse_onion_payload(payload)
        except ValueError:
            return None
        accepted = KNOWN_EVEN_TYPES | self.sim.accept_htlc_tlv_types
        if any(t % 2 == 0 and t not in accepted for t in fields):
            return None
        return fields

    def send_hook(self, params: dict[str, Any]) -> dict[str, Any]:
        """Call `htlc_accepted` with these params; the answer must be `continue`."""
        answer = self.call("htlc_accepted", params)
        if answer != CONTINUE:
            raise PluginError(f"htlc_accepted answered {answer!r}, expected continue")
        return answer

    def htlc_accepted(self, payment_hash: str, payload: str | None = None) -> dict[str, Any]:
        """One incoming HTLC for `payment_hash`; remembered for replay."""
        params = self.hook_params(payment_hash, payload)
        answer = self.send_hook(params)
        self.sent_hooks.append(params)
        return answer

    def keysend(self, amount_msat: int, tlvs: Mapping[int, bytes] | None = None) -> str:
        """A keysend in lightningd's order: the keysend plugin makes the
        invoice, our hook sees the HTLC, then the invoice is paid. Its hash."""
        return str(self.sim.keysend(amount_msat, tlvs, on_htlc=self.htlc_accepted)["payment_hash"])

    def pay(
        self,
        invoice: str,
        amount_msat: int | None = None,
        records: Mapping[int, bytes] | None = None,
    ) -> dict[str, Any]:
        """Pay one of the node's invoices, our hook first, as lightningd does."""
        return self.sim.pay(invoice, amount_msat, records=records, on_htlc=self.htlc_accepted)

    def replay_hooks(self) -> int:
        """Send every remembered hook again, as lightningd does after a restart."""
        for params in self.sent_hooks:
            self.send_hook(copy.deepcopy(params))
        return len(self.sent_hooks)

    # ---------------------------------------------------------------- lifecycle
    @property
    def admin_token(self) -> str:
        """An admin token made as the operator would: the CLI on the data dir.

        The plugin never logs a token (lightningd's log is no place for one).
        """
        if self._token is None:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "lnplugin",
                    "token",
                    "create",
                    "--scope",
                    "admin",
                    "--data-dir",
                    str(self.data_dir),
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            self._token = proc.stdout.strip().splitlines()[-1]
        return self._token

    def shutdown(self, timeout: float = CALL_TIMEOUT) -> int:
        """CLN's `shutdown` notification; waits for a clean exit, kills after `timeout`."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            with contextlib.suppress(PluginError):
                self.notify("shutdown", {"shutdown": {}})
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            self.logs.append("driver: plugin ignored shutdown, killed")
        self._close_pipes()
        return code

    def kill(self) -> None:
        """SIGKILL: lightningd (or the machine) dies under the plugin."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._close_pipes()

    def restart(self, *, replay: bool = True, clean: bool = True) -> PluginDriver:
        """Stop (shutdown, or SIGKILL if not `clean`), start again, replay hooks."""
        if clean:
            self.shutdown()
        else:
            self.kill()
        self.start()
        if replay:
            self.replay_hooks()
        return self

    def _close_pipes(self) -> None:
        if self.proc is None:
            return
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def __enter__(self) -> PluginDriver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
