"""A Core Lightning JSON-RPC simulator on a real unix socket.

Tests (and people trying lnplugin without a node) point the CLN adapter at it
exactly as at lightningd: JSON-RPC 2.0 over a unix socket, every response
followed by "\\n\\n". Reply shapes copy the real v26.06.6 captures in
tests/fixtures/cln/ key for key (which keys appear when, ints for msat), and
the index semantics follow lightningd: `created_index`/`updated_index`
counters, `listinvoices index=updated start=N` (never-updated invoices count
as 0), `wait`, `waitanyinvoice` with error 904 on timeout.

Besides CLN's own commands it answers `sim-pay`, `sim-keysend`, `sim-send`
and `sim-expire`, so a person running the CLI can drive it with any JSON-RPC
client; tests call the same operations as methods (`pay`, `keysend`,
`send_payment`, `expire`; `add_part` and `set_part` build a payment part
by part, as `pay`/`xpay` send one HTLC per part). `listpays` combines the
rows of one `listsendpays` answer, as CLN's pay plugin does, so its
`limit` counts parts.

Fault knobs: `stop()` removes the socket and drops every connection (node
gone), `reply_delay` slows every reply, `restart()` comes back on the same
socket with the data from the journal in `data_dir`. `version` emulates older
nodes: before 23.08 there is no `wait` nor `index` paging, before 23.05 msat
fields are "123msat" strings.

    python -m lnplugin_sim.cln_sim --data-dir D --socket PATH
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from coincurve import PrivateKey

from lnplugin.bolt11 import Bolt11Error, RouteHop
from lnplugin.bolt11 import decode as decode_bolt11
from lnplugin.bolt11 import encode as encode_bolt11
from lnplugin.boostagram import KEYSEND_PREIMAGE
from lnplugin.nodes.base import CURRENCY_BY_NETWORK
from lnplugin.nodes.cln import version_tuple
from lnplugin.nodes.cln.tlv import encode_payload
from lnplugin_sim import cln_bolt11

DEFAULT_VERSION = "v26.06.6"
MAX_DESCRIPTION = 639  # bytes; longer needs deschashonly
# Called with (payment hash, hop payload) where lightningd would call a
# plugin's `htlc_accepted` hook: after the keysend plugin, before settling.
HtlcHook = Callable[[str, str], object]
PEER_ID = "0379aea9a971932a2ca50cc78f52f0e77d62244b895114b477eada62cfde126e80"
PRIVATE_CHANNEL = RouteHop(PEER_ID, "103x1x0", 1000, 1, 18)
# Parameters lightningd reads with `param_escaped_string`, which takes UTF-8
# but refuses a `\u` escape ("should be a string (without \u)").
ESCAPED_STRING_PARAMS = {"invoice": ("description",)}
# A `\u` escape in raw JSON text: a backslash-u preceded by an even number of
# backslashes (an odd number would make it a literal backslash, then "u").
_U_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u")
# Bits of the features field in the invoices of the captured v26.06.6 node
# ("02024100"): var_onion_optin, payment_secret, basic_mpp, option_route_blinding.
INVOICE_FEATURES = (8, 14, 17, 25)


class RpcFailure(Exception):
    """A JSON-RPC error reply (code, message, optional data)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out


def parse_msat(value: Any) -> int:
    """Amount input as CLN accepts it: int msat or '123msat' / '5sat' / '0.1btc'."""
    if isinstance(value, bool):
        raise RpcFailure(-32602, "amount_msat: should be a millisatoshi amount")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        for suffix, factor in (("msat", 1), ("sat", 1000), ("btc", 100_000_000_000)):
            if value.endswith(suffix):
                number = value[: -len(suffix)]
                try:
                    return int(float(number) * factor) if "." in number else int(number) * factor
                except ValueError:
                    break
        if value.isdigit():
            return int(value)
    raise RpcFailure(
        -32602, f"amount_msat: should be a millisatoshi amount: invalid token '{value}'"
    )


def _tu(value: int) -> bytes:
    """Truncated unsigned int (BOLT1 tu64/tu32): big-endian without leading zeros."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _plain_msat(value: int | str) -> int:
    """An msat amount as rendered (int, or "123msat" before v23.05)."""
    return int(str(value).removesuffix("msat"))


def _paged(
    rows: list[dict[str, Any]], index: str | None, start: int | None, limit: int | None
) -> list[dict[str, Any]]:
    """`index=created|updated start=N limit=K`: rows whose index >= N (never
    updated counts as 0), ascending, at most K; `rows` as given without `index`."""
    if index is None:
        return rows
    key = "created_index" if index == "created" else "updated_index"
    rows = [r for r in rows if (r.get(key) or 0) >= (start or 0)]
    rows.sort(key=lambda r: (r.get(key) or 0, r["created_index"]))
    return rows if limit is None else rows[: int(limit)]


class _Journal:
    """Append-only JSON-lines persistence: O(1) per change, replayed on start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None

    def replay(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        entries = []
        for line in self.path.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a torn last line after a kill
                entries.append(json.loads(line))
        return entries

    def append(self, entry: dict[str, Any]) -> None:
        if self._fh is None:
            self._fh = self.path.open("a")
        self._fh.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class ClnSim:
    """One simulated lightningd (the receiving node "B" of the captures)."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        socket_path: str | os.PathLike[str],
        *,
        network: str = "regtest",
        version: str = DEFAULT_VERSION,
        alias: str = "SIM",
        accept_htlc_tlv_types: tuple[int, ...] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.socket_path = str(socket_path)
        self.network = network
        self.version = version
        self.alias = alias
        self.accept_htlc_tlv_types = set(accept_htlc_tlv_types)
        self.reply_delay = 0.0  # seconds slept before every reply (fault knob)
        # Fault knob: method -> a function run (under the simulator's lock)
        # just before that command, to make something happen in between two
        # of a client's calls (a payment landing between listing and deleting).
        self.before: dict[str, Callable[[], object]] = {}
        # Commands received, by method, and those blocked right now. Like
        # lightningd, a blocked command whose caller hung up stays blocked
        # until it completes (or its own `timeout` passes).
        self.calls: Counter[str] = Counter()
        self.blocked = 0
        self.blockheight = 108
        self._cv = threading.Condition(threading.RLock())
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._running = False
        self._threads: list[threading.Thread] = []
        self._journal = _Journal(self.data_dir / "cln_sim.jsonl")
        self._load()

    # ---------------------------------------------------------------- state
    def _load(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.invoices: dict[str, dict[str, Any]] = {}  # label -> record, created order
        self.sendpays: dict[int, dict[str, Any]] = {}  # created_index -> record
        self.nodes: dict[str, str] = {}  # pubkey -> alias
        self.counters: dict[str, int] = {
            "inv_created": 0, "inv_updated": 0, "inv_deleted": 0, "pay_index": 0,
            "sp_created": 0, "sp_updated": 0,
        }  # fmt: skip
        node_key = None
        for entry in self._journal.replay():
            kind = entry["t"]
            if kind == "meta":
                node_key = entry["node_key"]
            elif kind == "inv":
                self.invoices[entry["rec"]["label"]] = entry["rec"]
            elif kind == "del":
                self.invoices.pop(entry["label"], None)
            elif kind == "sp":
                self.sendpays[entry["rec"]["created_index"]] = entry["rec"]
            elif kind == "node":
                self.nodes[entry["id"]] = entry["alias"]
            if "c" in entry:
                self.counters.update(entry["c"])
        if node_key is None:
            node_key = secrets.token_hex(32)
            self._journal.append({"t": "meta", "node_key": node_key})
        self._key = bytes.fromhex(node_key)
        self.node_id = PrivateKey(self._key).public_key.format().hex()

    def _save(self, entry: dict[str, Any]) -> None:
        entry["c"] = dict(self.counters)
        self._journal.append(entry)
        self._cv.notify_all()

    def _by_hash(self, payment_hash: str) -> dict[str, Any] | None:
        return next((r for r in self.invoices.values() if r["payment_hash"] == payment_hash), None)

    @property
    def _legacy_msat(self) -> bool:
        return version_tuple(self.version) < (23, 5)

    def _msat(self, value: int) -> int | str:
        return f"{value}msat" if self._legacy_msat else value

    # ---------------------------------------------------------------- server
    def start(self) -> ClnSim:
        """Listen on `socket_path` (mode 0600 like lightningd)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        os.chmod(self.socket_path, 0o600)
        listener.listen(64)
        self._listener = listener
        self._running = True
        self._spawn(self._accept_loop, listener)
        self._spawn(self._expiry_loop)
        return self

    def stop(self) -> None:
        """The node goes away: socket file removed, every connection dropped."""
        with self._cv:
            self._running = False
            self._cv.notify_all()
            listener, self._listener = self._listener, None
            conns, self._conns = set(self._conns), set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        self._journal.close()

    def restart(self) -> ClnSim:
        """Stop, reload everything from the journal, and listen on the same socket."""
        self.stop()
        self._load()
        return self.start()

    close = stop

    def __enter__(self) -> ClnSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="cln-sim")
        thread.start()
        self._threads.append(thread)

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._running:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self._cv:
                if not self._running:
                    conn.close()
                    return
                self._conns.add(conn)
            threading.Thread(target=self._serve_conn, args=(conn,), daemon=True).start()

    def _serve_conn(self, conn: socket.socket) -> None:
        decoder = json.JSONDecoder()
        # A character whose UTF-8 bytes straddle two reads is decoded whole.
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        buf = ""
        write_lock = threading.Lock()
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += utf8.decode(data)
                while True:
                    buf = buf.lstrip()
                    if not buf:
                        break
                    try:
                        request, end = decoder.raw_decode(buf)
                    except ValueError:
                        break  # incomplete: read more
                    raw, buf = buf[:end], buf[end:]
                    threading.Thread(
                        target=self._handle, args=(conn, write_lock, request, raw), daemon=True
                    ).start()
        except OSError:
            return
        finally:
            with self._cv:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _handle(
        self, conn: socket.socket, write_lock: threading.Lock, request: Any, raw: str = ""
    ) -> None:
        req_id = request.get("id") if isinstance(request, dict) else None
        try:
            if not isinstance(request, dict) or not isinstance(request.get("method"), str):
                raise RpcFailure(-32600, "Expected a JSON-RPC request object")
            _refuse_u_escapes(request, raw)
            result = self.dispatch(request["method"], request.get("params") or {})
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": req_id, "result": result}
        except RpcFailure as exc:
            reply = {"jsonrpc": "2.0", "id": req_id, "error": exc.as_dict()}
        except _Stopped:
            return
        deadline = time.monotonic() + self.reply_delay
        while self._running and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        if not self._running:
            return
        with write_lock, contextlib.suppress(OSError):
            conn.sendall((json.dumps(reply, ensure_ascii=False) + "\n\n").encode())

    def _expiry_loop(self) -> None:
        """lightningd marks unpaid invoices expired on a timer; so do we."""
        while self._running:
            self.expire()
            with self._cv:
                self._cv.wait(0.2)

    # ---------------------------------------------------------------- dispatch
    def dispatch(self, method: str, params: Any) -> Any:
        """Run one command; raises RpcFailure like lightningd's error replies."""
        entry = _COMMANDS.get(method)
        if entry is None or entry[0] > version_tuple(self.version):
            raise RpcFailure(-32601, f"Unknown command '{method}'")
        _, names, handler = entry
        if isinstance(params, list):
            if len(params) > len(names):
                raise RpcFailure(-32602, "too many parameters")
            params = dict(zip(names, params, strict=False))
        if not isinstance(params, dict):
            raise RpcFailure(-32602, "params must be an object or array")
        for name in params:
            if name not in names or (name, method) in self._unknown_params():
                raise RpcFailure(-32602, f"unknown parameter: {name}")
        kwargs = {k: v for k, v in params.items() if v is not None}
        with self._cv:
            self.calls[method] += 1
            if method in self.before:
                self.before.pop(method)()
            try:
                return handler(self, **kwargs)
            except (RpcFailure, _Stopped):
                raise
            except TypeError as exc:  # a missing or mistyped parameter
                raise RpcFailure(-32602, f"{method}: {exc}") from None
            except (ValueError, KeyError) as exc:
                raise RpcFailure(-1, f"{method}: {exc}") from None

    def _unknown_params(self) -> set[tuple[str, str]]:
        """Paging parameters the emulated version does not know yet."""
        v = version_tuple(self.version)
        hidden: set[tuple[str, str]] = set()
        for name in ("index", "start", "limit"):
            if v < (23, 8):
                hidden.add((name, "listinvoices"))
            if v < (23, 11):
                hidden.add((name, "listsendpays"))
            if v < (24, 11):
                hidden.add((name, "listpays"))
        return hidden

    def _block(self, ready: Callable[[], Any], timeout: float | None) -> Any:
        """Wait on the condition until `ready()` is truthy; None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.blocked += 1
        try:
            while True:
                value = ready()
                if value:
                    return value
                if not self._running:
                    raise _Stopped()
                remaining = 0.5 if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cv.wait(min(0.5, remaining))
        finally:
            self.blocked -= 1

    # ---------------------------------------------------------------- rendering
    def render_invoice(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        """listinvoices shape, keys in lightningd's order."""
        out: dict[str, Any] = {"label": rec["label"], "bolt11": rec["bolt11"]}
        out["payment_hash"] = rec["payment_hash"]
        if rec.get("amount_msat") is not None:
            out["amount_msat"] = self._msat(rec["amount_msat"])
        out["status"] = rec["status"]
        if rec["status"] == "paid":
            out["pay_index"] = rec["pay_index"]
            out["amount_received_msat"] = self._msat(rec["amount_received_msat"])
            out["paid_at"] = rec["paid_at"]
            out["payment_preimage"] = rec["preimage"]
        if rec.get("description") is not None:
            out["description"] = rec["description"]
        out["expires_at"] = rec["expires_at"]
        if version_tuple(self.version) >= (23, 8):
            out["created_index"] = rec["created_index"]
            if rec.get("updated_index"):
                out["updated_index"] = rec["updated_index"]
        return out

    @property
    def _indexes_payments(self) -> bool:
        """Payments get an `updated_index` from v23.11; the migration that
        added the column left those completed before at 0 (DEFAULT 0 in
        wallet/migrations.c), so a node upgraded past it has both."""
        return version_tuple(self.version) >= (23, 11)

    def _render_sendpay(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        # `created_index` and `updated_index` came in v23.11; `id` is the old name.
        indexed = version_tuple(self.version) >= (23, 11)
        out: dict[str, Any] = {"created_index": rec["created_index"]} if indexed else {}
        out["id"] = rec["created_index"]
        out["payment_hash"] = rec["payment_hash"]
        out["groupid"] = rec["groupid"]
        if rec.get("updated_index") and indexed:
            out["updated_index"] = rec["updated_index"]
        if rec.get("partid", 1):  # lightningd leaves out a partid of 0
            out["partid"] = rec.get("partid", 1)
        out["destination"] = rec["destination"]
        out["amount_msat"] = self._msat(rec["amount_msat"])
        out["amount_sent_msat"] = self._msat(rec["amount_sent_msat"])
        out["created_at"] = rec["created_at"]
        if rec.get("completed_at") is not None and rec["status"] != "pending":
            out["completed_at"] = rec["completed_at"]
        out["status"] = rec["status"]
        if rec["status"] == "complete":
            out["payment_preimage"] = rec["preimage"]
        if rec.get("bolt11"):
            out["bolt11"] = rec["bolt11"]
        if rec.get("description"):
            out["description"] = rec["description"]
        return out

    def _render_pay(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        """The listpays entry of one sendpay row alone (what `send_payment`
        returns); `cmd_listpays` combines the parts of a payment."""
        return self._combine_pays([self._render_sendpay(rec)])[0]

    def _combine_pays(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """listpays' entries from listsendpays rows, as the pay plugin
        combines them (plugins/pay.c in v24.11, plugins/xpay/listpays.c from
        v26.06): one entry per (payment_hash, groupid) among `rows` only,
        in the order each is first seen; amounts summed over complete and
        pending parts; status complete if any part is, else pending if any
        is, else failed; completed_at the earliest of the complete parts;
        created_at, label and destination from the first row seen, bolt11 and
        description from any; the lowest created_index, the highest
        updated_index."""
        combined: dict[tuple[str, int], dict[str, Any]] = {}
        for row in rows:
            key = (row["payment_hash"], int(row.get("groupid") or 0))
            pm = combined.get(key)
            if pm is None:
                pm = combined[key] = {
                    "row": row, "states": set(), "sent": 0, "amount": 0, "parts": 0,
                    "invstring": None, "description": None, "preimage": None,
                    "success_at": None, "created_index": row.get("created_index", 0),
                    "updated_index": row.get("updated_index", 0),
                }  # fmt: skip
            else:
                pm["created_index"] = min(pm["created_index"], row.get("created_index", 0))
                pm["updated_index"] = max(pm["updated_index"], row.get("updated_index", 0))
            pm["invstring"] = pm["invstring"] or row.get("bolt11") or row.get("bolt12")
            pm["description"] = pm["description"] or row.get("description")
            if row["status"] in ("complete", "pending"):
                pm["sent"] += _plain_msat(row["amount_sent_msat"])
                if pm["amount"] is not None and row.get("amount_msat") is not None:
                    pm["amount"] += _plain_msat(row["amount_msat"])
                else:
                    pm["amount"] = None
                pm["parts"] += 1
            if row["status"] == "complete":
                pm["preimage"] = row.get("payment_preimage")
                done = int(row.get("completed_at") or 0)
                pm["success_at"] = done if pm["success_at"] is None else min(pm["success_at"], done)
            pm["states"].add(row["status"])
        out = []
        for pm in combined.values():
            first = pm["row"]
            entry: dict[str, Any] = {}
            if pm["invstring"]:
                entry["bolt12" if pm["invstring"].startswith("lni") else "bolt11"] = pm["invstring"]
            if pm["description"]:
                entry["description"] = pm["description"]
            if first.get("destination"):
                entry["destination"] = first["destination"]
            entry["payment_hash"] = first["payment_hash"]
            status = "failed"
            if "complete" in pm["states"]:
                status = "complete"
            elif "pending" in pm["states"]:
                status = "pending"
            entry["status"] = status
            entry["created_at"] = first["created_at"]
            if pm["success_at"] is not None:
                entry["completed_at"] = pm["success_at"]
            if first.get("label"):
                entry["label"] = first["label"]
            if pm["preimage"]:
                entry["preimage"] = pm["preimage"]
            if pm["amount"] is not None and pm["parts"] > 0:
                entry["amount_msat"] = self._msat(pm["amount"])
            entry["amount_sent_msat"] = self._msat(pm["sent"])
            if pm["parts"] > 1:
                entry["number_of_parts"] = pm["parts"]
            if version_tuple(self.version) >= (24, 11):  # listpays' indexes came in v24.11
                entry["created_index"] = pm["created_index"]
                if pm["updated_index"]:
                    entry["updated_index"] = pm["updated_index"]
            out.append(entry)
        return out

    # ---------------------------------------------------------------- minting
    def _new_invoice(
        self,
        *,
        amount_msat: int | None,
        label: str,
        description: str,
        expiry: int,
        preimage: str,
        deschashonly: bool = False,
        cltv: int = 18,
        hints: bool = False,
        now: int | None = None,
    ) -> dict[str, Any]:
        now = int(time.time()) if now is None else now
        payment_hash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
        secret = secrets.token_hex(32)
        invstring = encode_bolt11(
            currency=CURRENCY_BY_NETWORK[self.network],
            amount_msat=amount_msat,
            timestamp=now,
            payment_hash=payment_hash,
            payment_secret=secret,
            private_key=self._key,
            description=None if deschashonly else description,
            description_hash=hashlib.sha256(description.encode()).hexdigest()
            if deschashonly
            else None,
            expiry=expiry,
            min_final_cltv_expiry_delta=cltv,
            features=INVOICE_FEATURES,
            route_hints=[[PRIVATE_CHANNEL]] if hints else (),
        )
        self.counters["inv_created"] += 1
        rec = {
            "label": label,
            "bolt11": invstring,
            "payment_hash": payment_hash,
            "amount_msat": amount_msat,
            "status": "unpaid",
            "description": description,
            "expires_at": now + expiry,
            "created_index": self.counters["inv_created"],
            "preimage": preimage,
            "payment_secret": secret,
            "created_at": now,
            "cltv": cltv,
        }
        self.invoices[label] = rec
        self._save({"t": "inv", "rec": rec})
        return rec

    def _settle(
        self,
        rec: dict[str, Any],
        amount_msat: int,
        cltv_delta: int = 11,
        records: Mapping[int, bytes] | None = None,
    ) -> None:
        """Mark `rec` paid, keeping the hop payload a later plugin would see:
        amount, cltv, payment_data and any extra `records`."""
        payload = self._payload(rec, amount_msat, cltv_delta, records)
        self.counters["pay_index"] += 1
        self.counters["inv_updated"] += 1
        rec.update(
            status="paid",
            pay_index=self.counters["pay_index"],
            amount_received_msat=amount_msat,
            paid_at=int(time.time()),
            updated_index=self.counters["inv_updated"],
            htlc_payload=payload,
        )
        self._save({"t": "inv", "rec": rec})

    def _payload(
        self,
        rec: dict[str, Any],
        amount_msat: int,
        cltv_delta: int,
        records: Mapping[int, bytes] | None,
    ) -> str:
        """The hop payload of one HTLC paying `rec` in full, as a later plugin sees it."""
        total = _tu(amount_msat)
        fields = {
            2: total,
            4: _tu(self.blockheight + cltv_delta),
            8: bytes.fromhex(rec["payment_secret"]) + total,
        }
        return encode_payload(fields | dict(records or {}))

    # ---------------------------------------------------------------- CLN commands
    def cmd_getinfo(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "alias": self.alias,
            "color": self.node_id[:6],
            "num_peers": 1,
            "num_pending_channels": 0,
            "num_active_channels": 1,
            "num_inactive_channels": 0,
            "address": [],
            "binding": [{"type": "ipv4", "address": "127.0.0.1", "port": 19847}],
            "version": self.version,
            "blockheight": self.blockheight,
            "network": self.network,
            "fees_collected_msat": self._msat(0),
            "lightning-dir": str(self.data_dir),
            "our_features": {
                "init": "800898880a8a59a1",
                "node": "808898880a8a59a1",
                "channel": "",
                "invoice": "02000002024100",
            },
        }

    def cmd_invoice(
        self,
        amount_msat: Any,
        label: Any,
        description: Any,
        expiry: int = 604800,
        fallbacks: Any = None,
        preimage: str | None = None,
        exposeprivatechannels: Any = None,
        cltv: int = 18,
        deschashonly: bool = False,
    ) -> dict[str, Any]:
        amount = None if amount_msat == "any" else parse_msat(amount_msat)
        if amount is not None and amount <= 0:
            raise RpcFailure(-32602, "amount_msat: should be positive msat or 'any'")
        if not isinstance(label, (str, int)) or isinstance(label, bool):
            raise RpcFailure(-32602, "label: should be a string or integer")
        label = str(label)
        if not isinstance(description, str):
            raise RpcFailure(-32602, "description: should be a string")
        if len(description.encode()) > MAX_DESCRIPTION and not deschashonly:
            raise RpcFailure(
                -32602,
                f"description: Descriptions greater than {MAX_DESCRIPTION} bytes "
                "not yet supported (use deschashonly)",
            )
        if label in self.invoices:
            raise RpcFailure(900, "Duplicate label")
        preimage = preimage or secrets.token_hex(32)
        if self._by_hash(hashlib.sha256(bytes.fromhex(preimage)).hexdigest()):
            raise RpcFailure(901, "preimage already used")
        rec = self._new_invoice(
            amount_msat=amount,
            label=label,
            description=description,
            expiry=int(expiry),
            preimage=preimage,
            deschashonly=bool(deschashonly),
            cltv=int(cltv),
            hints=exposeprivatechannels is True,
        )
        return {
            "payment_hash": rec["payment_hash"],
            "expires_at": rec["expires_at"],
            "bolt11": rec["bolt11"],
            "payment_secret": rec["payment_secret"],
            "created_index": rec["created_index"],
        }

    def cmd_listinvoices(
        self,
        label: Any = None,
        invstring: str | None = None,
        payment_hash: str | None = None,
        offer_id: str | None = None,
        index: str | None = None,
        start: int | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        if sum(x is not None for x in (label, invstring, payment_hash, offer_id)) > 1:
            raise RpcFailure(
                -32602, "Can only specify one of label, invstring, payment_hash or offer_id"
            )
        if (start is not None or limit is not None) and index is None:
            raise RpcFailure(-32602, "Can only specify start or limit with index")
        if index not in (None, "created", "updated"):
            raise RpcFailure(-32602, "index: should be 'created' or 'updated'")
        rows = list(self.invoices.values())
        if label is not None:
            rows = [r for r in rows if r["label"] == str(label)]
        elif payment_hash is not None:
            rows = [r for r in rows if r["payment_hash"] == payment_hash]
        elif invstring is not None:
            rows = [r for r in rows if r["bolt11"] == invstring]
        elif offer_id is not None:
            rows = []
        rows = _paged(rows, index, start, limit)
        return {"invoices": [self.render_invoice(r) for r in rows]}

    def cmd_waitanyinvoice(
        self, lastpay_index: int = 0, timeout: int | None = None
    ) -> dict[str, Any]:
        if timeout is not None and (
            not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0
        ):  # lightningd takes whole seconds only
            raise RpcFailure(
                -32602, f"timeout: should be an unsigned 64 bit integer: invalid token '{timeout}'"
            )

        def next_paid() -> dict[str, Any] | None:
            paid = [
                r for r in self.invoices.values()
                if r["status"] == "paid" and r["pay_index"] > int(lastpay_index)
            ]  # fmt: skip
            return min(paid, key=lambda r: r["pay_index"]) if paid else None

        rec = self._block(next_paid, None if timeout is None else float(timeout))
        if rec is None:
            raise RpcFailure(904, "Timed out while waiting for invoice to be paid")
        return self.render_invoice(rec)

    def cmd_waitinvoice(self, label: Any) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            rec = self.invoices.get(str(label))
            if rec is None:
                raise RpcFailure(-1, "Invoice deleted during wait")
            return rec if rec["status"] != "unpaid" else None

        rec = self._block(done, None)
        if rec["status"] == "expired":
            raise RpcFailure(903, "invoice expired during wait")
        return self.render_invoice(rec)

    def cmd_wait(self, subsystem: str, indexname: str, nextvalue: int) -> dict[str, Any]:
        v = version_tuple(self.version)
        subsystems = {"invoices": "inv"} | ({"sendpays": "sp"} if v >= (23, 11) else {})
        if subsystem not in subsystems and subsystem != "forwards":
            raise RpcFailure(-32602, "subsystem: must be invoices, forwards or sendpays")
        if indexname not in ("created", "updated", "deleted"):
            raise RpcFailure(-32602, "indexname: must be created, updated or deleted")
        counter = f"{subsystems.get(subsystem, 'fw')}_{indexname}"

        def reached() -> int | None:
            value = self.counters.get(counter, 0)
            return value if value >= int(nextvalue) else None

        value = reached() if int(nextvalue) == 0 else self._block(reached, None)
        return {"subsystem": subsystem, indexname: value or 0}

    def cmd_listsendpays(
        self,
        bolt11: str | None = None,
        payment_hash: str | None = None,
        status: str | None = None,
        index: str | None = None,
        start: int | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        rows = self._payment_rows(bolt11, payment_hash, status, index, start, limit)
        return {"payments": [self._render_sendpay(r) for r in rows]}

    def cmd_listpays(
        self,
        bolt11: str | None = None,
        payment_hash: str | None = None,
        status: str | None = None,
        index: str | None = None,
        start: int | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """The pay plugin hands every parameter to `listsendpays` and combines
        only the rows that one answer holds: with `limit`, the parts of a
        payment on either side of the limit come back as two entries."""
        if (start or 0) != 0 and index is None:
            raise RpcFailure(-32602, "Can only specify {start} with {index}")
        if limit is not None and index is None:
            raise RpcFailure(-32602, "Can only specify {limit} with {index}")
        rows = self._payment_rows(bolt11, payment_hash, status, index, start, limit)
        return {"pays": self._combine_pays([self._render_sendpay(r) for r in rows])}

    def _payment_rows(
        self,
        bolt11: str | None,
        payment_hash: str | None,
        status: str | None,
        index: str | None,
        start: int | None,
        limit: int | None,
    ) -> list[dict[str, Any]]:
        """lightningd's `json_listsendpays` (lightningd/pay.c): a payment_hash
        (or bolt11) lists every part of that hash, by id, whatever `status`,
        `index` or `limit` say (wallet.c `payments_by_hash`) from v23.11;
        otherwise `status` filters and `index=updated start limit` pages
        (`WHERE status = ? AND updated_index >= ? ORDER BY updated_index
        LIMIT ?`), and `limit` counts parts, not payments."""
        if bolt11 is not None and payment_hash is not None:
            raise RpcFailure(-32602, "Can only specify one of {bolt11} or {payment_hash}")
        if (start or 0) != 0 and index is None:
            raise RpcFailure(-32602, "Can only specify {start} with {index}")
        if limit is not None and index is None:
            raise RpcFailure(-32602, "Can only specify {limit} with {index}")
        if (bolt11 is not None or payment_hash is not None) and (start or 0) != 0:
            raise RpcFailure(-32602, "Cannot use start with bolt11 or payment_hash")
        rows = list(self.sendpays.values())
        if bolt11 is not None:
            payment_hash = cln_bolt11.decode(bolt11)["payment_hash"]
        if payment_hash is not None:
            rows = [r for r in rows if r["payment_hash"] == payment_hash]
            if status is not None and not self._indexes_payments:  # v23.08 filtered these too
                rows = [r for r in rows if r["status"] == status]
            return rows
        if status is not None:
            rows = [r for r in rows if r["status"] == status]
        return _paged(rows, index, start, limit)

    def cmd_decode(self, string: str) -> dict[str, Any]:
        try:
            return cln_bolt11.decode(string)
        except ValueError as exc:
            raise RpcFailure(-32602, f"string: {exc}") from None

    def cmd_delinvoice(self, label: Any, status: str, desconly: bool = False) -> dict[str, Any]:
        rec = self.invoices.get(str(label))
        if rec is None:
            raise RpcFailure(905, "Unknown invoice")
        if rec["status"] != status:
            raise RpcFailure(
                906,
                f"Invoice status is {rec['status']} not {status}",
                {"current_status": rec["status"], "expected_status": status},
            )
        before = self.render_invoice(rec)
        if desconly:
            if rec.get("description") is None:
                raise RpcFailure(908, "Invoice description already removed")
            self.counters["inv_updated"] += 1
            rec.update(description=None, updated_index=self.counters["inv_updated"])
            self._save({"t": "inv", "rec": rec})
            return self.render_invoice(rec)
        del self.invoices[rec["label"]]
        self.counters["inv_deleted"] += 1
        self._save({"t": "del", "label": rec["label"]})
        return before

    def cmd_signinvoice(self, invstring: str) -> dict[str, Any]:
        """Sign a BOLT11 invoice with the node key, storing nothing (v23.02+).
        CLN ignores the signature it is given; the simulator reads the fields
        by decoding (the caller signs with a throwaway key) and signs anew."""
        try:
            inv = decode_bolt11(invstring)
        except Bolt11Error as exc:
            raise RpcFailure(-32602, f"Unparsable invoice '{invstring}': {exc}") from None
        if inv.description is None and inv.description_hash is None:
            raise RpcFailure(-32602, "Missing description in invoice")
        signed = encode_bolt11(
            currency=inv.currency,
            amount_msat=inv.amount_msat,
            timestamp=inv.timestamp,
            payment_hash=inv.payment_hash,
            payment_secret=inv.payment_secret or "",
            private_key=self._key,
            description=inv.description,
            description_hash=inv.description_hash,
            expiry=inv.expiry,
            min_final_cltv_expiry_delta=inv.min_final_cltv_expiry_delta,
            features=inv.features,
            route_hints=inv.route_hints,
            payment_metadata=inv.payment_metadata,
        )
        return {"bolt11": signed}

    def cmd_listnodes(self, id: str | None = None) -> dict[str, Any]:
        nodes = dict(self.nodes) | {self.node_id: self.alias}
        return {
            "nodes": [
                {"nodeid": pk, "alias": alias, "color": pk[:6], "last_timestamp": 1795231000}
                for pk, alias in nodes.items()
                if id is None or pk == id
            ]
        }

    def cmd_listconfigs(self, config: str | None = None) -> dict[str, Any]:
        """The v23.08+ `configs` shape, for the options lnplugin looks at."""
        tlv_types = sorted(self.accept_htlc_tlv_types)
        configs: dict[str, Any] = {
            "lightning-dir": {"value_str": str(self.data_dir), "source": "default"},
            "network": {"value_str": self.network, "source": "cmdline"},
            "allow-deprecated-apis": {"value_bool": True, "source": "default"},
            "rpc-file": {"value_str": os.path.basename(self.socket_path), "source": "default"},
            "accept-htlc-tlv-type": {
                "values_int": tlv_types,
                "sources": ["cmdline"] * len(tlv_types),
            },
            "rpc-file-mode": {"value_str": "0600", "source": "default"},
        }
        if config is None:
            return {"configs": configs}
        if config not in configs:
            raise RpcFailure(-32602, f"config: Unknown config option {config!r}")
        return {"configs": {config: configs[config]}}

    # ---------------------------------------------------------------- test controls
    def settle_bulk(
        self, count: int, amount_msat: int = 1000, description: str = "bulk"
    ) -> list[str]:
        """Create and pay `count` invoices at once, as if made outside lnplugin.

        The RPC path costs a round trip per invoice; load tests need thousands
        of settlements in well under a second. Rows, counters and journal are
        exactly what `invoice` + `pay` would leave. Returns the payment hashes.
        """
        hashes = []
        with self._cv:
            now = int(time.time())
            for _ in range(count):
                label = f"bulk-{self.counters['inv_created'] + 1}"
                rec = self._new_invoice(
                    amount_msat=amount_msat,
                    label=label,
                    description=description,
                    expiry=3600,
                    preimage=secrets.token_hex(32),
                    now=now,
                )
                self._settle(rec, amount_msat)
                hashes.append(rec["payment_hash"])
        return hashes

    def pay(
        self,
        invoice: str,
        amount_msat: int | None = None,
        *,
        records: Mapping[int, bytes] | None = None,
        on_htlc: HtlcHook | None = None,
    ) -> dict[str, Any]:
        """A payer pays our invoice (bolt11, payment hash or label); listinvoices row.

        `records`: extra TLVs the payer put in the final hop (a podcast app
        paying a Lightning Address invoice may add a boostagram). `on_htlc`
        (payment hash, hop payload) runs before the invoice is marked paid,
        as lightningd calls `htlc_accepted` before it settles.
        """
        with self._cv:
            rec = self.invoices.get(invoice) or next(
                (r for r in self.invoices.values() if invoice in (r["bolt11"], r["payment_hash"])),
                None,
            )
            if rec is None:
                raise RpcFailure(-1, "unknown invoice")
            if rec["status"] != "unpaid" or rec["expires_at"] <= time.time():
                raise RpcFailure(-1, f"invoice is {rec['status']}, cannot pay")
            amount = amount_msat if amount_msat is not None else rec.get("amount_msat")
            if amount is None:
                raise RpcFailure(-1, "amount_msat required for an 'any' invoice")
            if rec.get("amount_msat") is not None and amount < rec["amount_msat"]:
                raise RpcFailure(-1, "amount below the invoice amount")
            payload = self._payload(rec, amount, 11, records)
        if on_htlc is not None:
            on_htlc(rec["payment_hash"], payload)
        with self._cv:
            if rec["status"] != "unpaid":
                raise RpcFailure(-1, f"invoice is {rec['status']}, cannot pay")
            self._settle(rec, amount, records=records)
            return self.render_invoice(rec)

    def keysend(
        self,
        amount_msat: int,
        tlvs: Mapping[int, bytes] | None = None,
        *,
        on_htlc: HtlcHook | None = None,
    ) -> dict[str, Any]:
        """Receive a keysend as CLN's keysend plugin records it (listinvoices_keysend_b.json).

        The invoice gets label `keysend-<sec>.<nsec>`, amount "any", a week's
        expiry and description `keysend: <longest UTF-8 extra TLV>`; TLVs are
        not kept in the listing. Even types not in `accept_htlc_tlv_types` are
        stripped, as lightningd does, but only after the description was
        picked (it may quote a stripped record). The raw hop payload a later plugin would
        see (preimage TLV removed, payment_data added) is kept in the record's
        `htlc_payload` for the plugin-mode driver. `on_htlc` (payment hash,
        hop payload) runs once the keysend plugin made the invoice and before
        it is paid, as lightningd calls the next plugin's `htlc_accepted`.
        """
        sent = {int(t): bytes(v) for t, v in (tlvs or {}).items() if int(t) != KEYSEND_PREIMAGE}
        # The description is picked before the stripping: in type order, the
        # first strictly longest record that is valid UTF-8.
        text = None
        for _, value in sorted(sent.items()):
            try:
                decoded = value.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if text is None or len(value) > len(text.encode()):
                text = decoded
        records = {t: v for t, v in sent.items() if t % 2 == 1 or t in self.accept_htlc_tlv_types}
        description = f"keysend: {text}" if text is not None else "keysend"
        with self._cv:
            ns = time.time_ns()
            while (label := f"keysend-{ns // 10**9}.{ns % 10**9:09d}") in self.invoices:
                ns += 1
            rec = self._new_invoice(
                amount_msat=None,
                label=label,
                description=description,
                expiry=604800,
                preimage=secrets.token_hex(32),
                deschashonly=len(description.encode()) > MAX_DESCRIPTION,
                now=ns // 10**9,
            )
            payload = self._payload(rec, amount_msat, 23, records)
        if on_htlc is not None:
            on_htlc(rec["payment_hash"], payload)
        with self._cv:
            self._settle(rec, amount_msat, cltv_delta=23, records=records)
            return self.render_invoice(rec)

    def send_payment(
        self,
        amount_msat: int | None = None,
        *,
        bolt11: str | None = None,
        destination: str | None = None,
        fee_msat: int = 0,
        status: str = "complete",
        preimage: str | None = None,
    ) -> dict[str, Any]:
        """This node pays someone (bolt11, or a keysend to `destination`); listpays row.

        For a bolt11 the simulator cannot learn the payee's preimage: pass it
        as `preimage` when the test needs a consistent one.
        """
        preimage = preimage or secrets.token_hex(32)
        payment_hash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
        if bolt11 is not None:
            decoded = cln_bolt11.decode(bolt11)
            payment_hash = decoded["payment_hash"]
            destination = decoded["payee"]
            amount_msat = decoded.get("amount_msat", amount_msat)
        if amount_msat is None:
            raise RpcFailure(-1, "amount_msat required")
        now = int(time.time())
        with self._cv:
            self.counters["sp_created"] += 1
            rec: dict[str, Any] = {
                "created_index": self.counters["sp_created"],
                "payment_hash": payment_hash,
                "groupid": secrets.randbits(63),
                "destination": destination or PEER_ID,
                "amount_msat": amount_msat,
                "amount_sent_msat": amount_msat + fee_msat,
                "created_at": now,
                "status": status,
                "bolt11": bolt11,
            }
            if status in ("complete", "failed") and self._indexes_payments:
                self.counters["sp_updated"] += 1
                rec["updated_index"] = self.counters["sp_updated"]
            if status == "complete":
                rec.update(completed_at=now, preimage=preimage)
            elif status == "failed":
                rec["completed_at"] = now  # lightningd sets it for any end, not just success
            elif status == "pending":
                rec["preimage"] = preimage  # what the payee reveals when it completes
            self.sendpays[rec["created_index"]] = rec
            self._save({"t": "sp", "rec": rec})
            return self._render_pay(rec)

    def complete_payment(self, payment_hash: str) -> dict[str, Any]:
        """A pending payment of this node completes now (its updated index
        moves, as lightningd's does on a status change); its listpays row."""
        with self._cv:
            rec = next(
                r
                for r in self.sendpays.values()
                if r["payment_hash"] == payment_hash and r["status"] == "pending"
            )
            if self._indexes_payments:
                self.counters["sp_updated"] += 1
                rec["updated_index"] = self.counters["sp_updated"]
            rec.update(
                status="complete",
                completed_at=int(time.time()),
                preimage=rec.get("preimage") or secrets.token_hex(32),
            )
            self._save({"t": "sp", "rec": rec})
            return self._render_pay(rec)

    def add_part(
        self,
        payment_hash: str,
        *,
        groupid: int,
        partid: int,
        amount_msat: int,
        fee_msat: int = 0,
        status: str = "pending",
        bolt11: str | None = None,
        description: str | None = None,
        preimage: str | None = None,
    ) -> dict[str, Any]:
        """One sendpay part of a payment (as `pay`/`xpay` make one per HTLC
        they try): pending parts have no updated_index yet (lightningd's
        insert leaves it 0); a complete or failed one gets the next. The old
        pay plugin gives its bolt11 and description to the first part only.
        Its listsendpays row."""
        with self._cv:
            self.counters["sp_created"] += 1
            rec: dict[str, Any] = {
                "created_index": self.counters["sp_created"],
                "payment_hash": payment_hash,
                "groupid": groupid,
                "partid": partid,
                "destination": PEER_ID,
                "amount_msat": amount_msat,
                "amount_sent_msat": amount_msat + fee_msat,
                "created_at": int(time.time()),
                "status": "pending",
                "bolt11": bolt11,
                "description": description,
                "preimage": preimage,
            }
            self.sendpays[rec["created_index"]] = rec
            if status != "pending":
                return self.set_part(payment_hash, groupid, partid, status)
            self._save({"t": "sp", "rec": rec})
            return self._render_sendpay(rec)

    def set_part(self, payment_hash: str, groupid: int, partid: int, status: str) -> dict[str, Any]:
        """A pending part completes or fails now: lightningd's
        `wallet_payment_set_status` sets its status, completed_at and the
        next updated_index. Its listsendpays row."""
        with self._cv:
            rec = next(
                r
                for r in self.sendpays.values()
                if (r["payment_hash"], r["groupid"], r.get("partid", 1))
                == (payment_hash, groupid, partid)
            )
            if self._indexes_payments:
                self.counters["sp_updated"] += 1
                rec["updated_index"] = self.counters["sp_updated"]
            rec.update(status=status, completed_at=int(time.time()))
            if status == "complete":
                rec["preimage"] = rec.get("preimage") or secrets.token_hex(32)
            self._save({"t": "sp", "rec": rec})
            return self._render_sendpay(rec)

    def expire(self, payment_hash: str | None = None) -> list[dict[str, Any]]:
        """Mark due unpaid invoices expired (or this one, now); their listinvoices rows."""
        now = int(time.time())
        out = []
        with self._cv:
            for rec in self.invoices.values():
                if rec["status"] != "unpaid":
                    continue
                if payment_hash is not None:
                    if rec["payment_hash"] != payment_hash:
                        continue
                    rec["expires_at"] = min(rec["expires_at"], now)
                elif rec["expires_at"] > now:
                    continue
                self.counters["inv_updated"] += 1
                rec.update(status="expired", updated_index=self.counters["inv_updated"])
                self._save({"t": "inv", "rec": rec})
                out.append(self.render_invoice(rec))
        return out

    def add_node(self, pubkey: str, alias: str) -> None:
        """Make `listnodes` know another node's alias."""
        with self._cv:
            self.nodes[pubkey] = alias
            self._save({"t": "node", "id": pubkey, "alias": alias})

    def htlc_payload(self, payment_hash: str) -> str | None:
        """The raw onion payload the paying HTLC carried (for plugin-mode tests)."""
        rec = self._by_hash(payment_hash)
        return rec.get("htlc_payload") if rec else None

    # control commands over the socket, for people driving the CLI simulator
    def cmd_sim_pay(self, invoice: str, amount_msat: int | None = None) -> dict[str, Any]:
        return self.pay(invoice, amount_msat)

    def cmd_sim_keysend(
        self, amount_msat: int, tlvs: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        return self.keysend(
            amount_msat, {int(t): bytes.fromhex(v) for t, v in (tlvs or {}).items()}
        )

    def cmd_sim_send(
        self,
        amount_msat: int | None = None,
        bolt11: str | None = None,
        destination: str | None = None,
        fee_msat: int = 0,
    ) -> dict[str, Any]:
        return self.send_payment(
            amount_msat, bolt11=bolt11, destination=destination, fee_msat=fee_msat
        )

    def cmd_sim_expire(self, payment_hash: str | None = None) -> dict[str, Any]:
        return {"invoices": self.expire(payment_hash)}


def _refuse_u_escapes(request: dict[str, Any], raw: str) -> None:
    """Refuse a `\\u` escape in a parameter lightningd reads as an escaped
    string (`invoice` `description`), as lightningd does: it takes UTF-8 and
    the short escapes (`\\n`, `\\"`...) only. The raw text is decoded again
    with every `\\u` escape turned into the six characters it was written
    as; a parameter that decodes differently was written with one."""
    names = ESCAPED_STRING_PARAMS.get(request["method"], ())
    if not names or "\\u" not in raw:
        return
    params = request.get("params")
    literal = json.loads(_U_ESCAPE.sub(lambda m: m[1] + "\\\\u", raw)).get("params")
    if isinstance(params, list):
        positions = _COMMANDS[request["method"]][1]
        params = dict(zip(positions, params, strict=False))
        literal = dict(zip(positions, literal, strict=False))
    if not isinstance(params, dict) or not isinstance(literal, dict):
        return
    for name in names:
        if isinstance(params.get(name), str) and params[name] != literal.get(name):
            raise RpcFailure(
                -32602,
                f"{name}: should be a string (without \\u): invalid token (see logs for details)",
            )


class _Stopped(Exception):
    """The simulator stopped while a command was blocked; no reply is sent."""


def _names(fn: Callable[..., Any]) -> tuple[str, ...]:
    code = fn.__code__
    return code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount]


# method -> (first version that has it, parameter names in positional order, handler)
_COMMANDS: dict[str, tuple[tuple[int, int], tuple[str, ...], Callable[..., Any]]] = {}
for _attr in list(vars(ClnSim)):
    if _attr.startswith("cmd_"):
        _fn = getattr(ClnSim, _attr)
        _COMMANDS[_attr[4:].replace("_", "-")] = ((0, 0), _names(_fn), _fn)
_COMMANDS["wait"] = ((23, 8), *_COMMANDS["wait"][1:])
_COMMANDS["signinvoice"] = ((23, 2), *_COMMANDS["signinvoice"][1:])


def parser() -> argparse.ArgumentParser:
    """The command line, apart from `main` so tests/test_docs.py can check the
    docs' command lines against it."""
    parser = argparse.ArgumentParser(
        prog="python -m lnplugin_sim.cln_sim",
        description="Simulated Core Lightning JSON-RPC node on a unix socket.",
    )
    parser.add_argument("--data-dir", required=True, help="Directory for the simulator's journal.")
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on.")
    parser.add_argument("--network", default="regtest", choices=sorted(CURRENCY_BY_NETWORK))
    parser.add_argument(
        "--version", default=DEFAULT_VERSION, help="Core Lightning version to emulate."
    )
    parser.add_argument("--alias", default="SIM")
    parser.add_argument(
        "--accept-htlc-tlv-type",
        type=int,
        action="append",
        default=[],
        help="Even TLV type to keep in keysends (repeatable), like lightningd's option.",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    sim = ClnSim(
        args.data_dir,
        args.socket,
        network=args.network,
        version=args.version,
        alias=args.alias,
        accept_htlc_tlv_types=tuple(args.accept_htlc_tlv_type),
    )
    sim.start()
    print(f"cln-sim {sim.node_id} listening on {sim.socket_path}", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    sim.stop()


if __name__ == "__main__":
    main()
