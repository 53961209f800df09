"""The CLN simulator answers like the real v26.06.6 captures, over a real socket."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyln.client import LightningRpc, RpcError

from lnplugin.nodes.cln.tlv import custom_records
from lnplugin_sim.cln_sim import ClnSim, RpcFailure
from tests import e2e
from tests.helpers_present import present

FIXTURES = Path(__file__).parent / "fixtures" / "cln"
ROOT = Path(__file__).parent.parent

tmp = e2e.fixture_tmp  # a short directory under /tmp: unix socket paths must be short


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def sim(tmp: Path) -> Iterator[ClnSim]:
    with ClnSim(tmp / "data", tmp / "rpc") as s:
        yield s


@pytest.fixture
def rpc(sim: ClnSim) -> LightningRpc:
    return LightningRpc(sim.socket_path)


def keys(d: dict) -> list[str]:
    return [k for k in d if not k.startswith("warning_")]


def test_getinfo_shape(rpc: LightningRpc) -> None:
    info = rpc.getinfo()
    assert keys(info) == keys(fixture("getinfo_b.json"))
    assert info["network"] == "regtest" and info["version"] == "v26.06.6"


def test_invoice_and_listinvoices_shapes(sim: ClnSim, rpc: LightningRpc) -> None:
    created = rpc.invoice(50000, "fx", "fixture invoice", 3600)
    assert keys(created) == keys(fixture("invoice_b.json"))
    unpaid = rpc.listinvoices("fx")["invoices"]
    assert [keys(r) for r in unpaid] == [keys(fixture("listinvoices_unpaid_b.json")["invoices"][0])]
    sim.pay("fx")
    paid = rpc.listinvoices(payment_hash=created["payment_hash"])["invoices"][0]
    assert keys(paid) == keys(fixture("listinvoices_paid_b.json")["invoices"][0])
    assert isinstance(paid["amount_received_msat"], int)
    assert rpc.listinvoices(invstring=created["bolt11"])["invoices"][0]["label"] == "fx"


def test_any_amount_invoice_paid_shape(sim: ClnSim, rpc: LightningRpc) -> None:
    created = rpc.invoice("any", "fxany", "any amount")
    assert keys(created) == keys(fixture("invoice_any_b.json"))
    with pytest.raises(RpcFailure):
        sim.pay("fxany")  # an amount is needed
    sim.pay(created["bolt11"], 77000)
    row = rpc.listinvoices("fxany")["invoices"][0]
    assert keys(row) == keys(fixture("listinvoices_any_paid_b.json")["invoices"][0])
    assert row["amount_received_msat"] == 77000


def test_expired_shape(sim: ClnSim, rpc: LightningRpc) -> None:
    created = rpc.invoice(1000, "fxexp", "expires", 3600)
    sim.expire(created["payment_hash"])
    row = rpc.listinvoices("fxexp")["invoices"][0]
    assert keys(row) == keys(fixture("listinvoices_expired_b.json")["invoices"][0])
    assert row["status"] == "expired"


def test_keysend_invoice_matches_capture(sim: ClnSim, rpc: LightningRpc) -> None:
    boost = b'{"action":"boost","message":"great episode"}'
    sim.keysend(21000, {7629169: boost, 696969: b"acct-42", 7629171: b"tip note"})
    row = rpc.listinvoices()["invoices"][0]
    captured = fixture("listinvoices_keysend_b.json")["invoices"][0]
    assert keys(row) == keys(captured)
    assert re.fullmatch(r"keysend-\d+\.\d{9}", row["label"])
    assert row["description"] == "keysend: " + boost.decode()
    assert row["expires_at"] - row["paid_at"] == captured["expires_at"] - captured["paid_at"]
    assert "amount_msat" not in row


def test_keysend_strips_unaccepted_even_types_and_keeps_raw_payload(tmp: Path) -> None:
    with ClnSim(tmp / "d", tmp / "s", accept_htlc_tlv_types=(133773310,)) as sim:
        row = sim.keysend(
            1000, {34349334: b"a much longer message", 133773310: b"{}", 7629169: b"bin\xff"}
        )
        # CLN's keysend plugin picks the description before it strips 34349334
        assert row["description"] == "keysend: a much longer message"
        records = custom_records(present(sim.htlc_payload(row["payment_hash"])))
        assert records == {133773310: b"{}", 7629169: b"bin\xff"}


def test_keysend_description_ties_go_to_the_lowest_type(sim: ClnSim) -> None:
    row = sim.keysend(1000, {7629175: b"second", 696969: b"first!", 7629169: b"\xffbinary!!"})
    assert row["description"] == "keysend: first!"


def test_index_paging_follows_capture_semantics(sim: ClnSim, rpc: LightningRpc) -> None:
    for label in ("a", "b", "c"):
        rpc.invoice(1000, label, label)
    sim.pay("b")
    sim.pay("a")
    # start=0 also lists never-updated invoices (their updated_index counts as 0)
    rows = rpc.listinvoices(index="updated", start=0, limit=50)["invoices"]
    assert [r["label"] for r in rows] == ["c", "b", "a"]
    assert "updated_index" not in rows[0]
    rows = rpc.listinvoices(index="updated", start=2)["invoices"]
    assert [(r["label"], r["updated_index"]) for r in rows] == [("a", 2)]
    rows = rpc.listinvoices(index="created", start=2, limit=1)["invoices"]
    assert [r["label"] for r in rows] == ["b"]
    with pytest.raises(RpcError):
        rpc.listinvoices(start=1)


def test_wait_and_waitanyinvoice(sim: ClnSim, rpc: LightningRpc) -> None:
    rpc.invoice(1000, "w", "w")
    assert rpc.wait(subsystem="invoices", indexname="updated", nextvalue=0) == {
        "subsystem": "invoices",
        "updated": 0,
    }
    with pytest.raises(RpcError) as err:
        rpc.waitanyinvoice(0, 0)
    assert err.value.error["code"] == 904
    with pytest.raises(RpcError) as err:
        rpc.waitanyinvoice(0, 0.5)  # whole seconds only, as lightningd's u64
    assert err.value.error["code"] == -32602
    threading.Timer(0.2, sim.pay, args=("w",)).start()
    got = rpc.wait(subsystem="invoices", indexname="updated", nextvalue=1)
    assert keys(got) == keys(fixture("wait_invoices_updated_b.json")) and got["updated"] == 1
    row = rpc.waitanyinvoice(0)
    assert keys(row) == keys(fixture("waitanyinvoice_0_b.json")) and row["pay_index"] == 1


def test_outgoing_shapes(sim: ClnSim, rpc: LightningRpc, tmp: Path) -> None:
    with ClnSim(tmp / "other", tmp / "o") as other:
        bolt11 = LightningRpc(other.socket_path).invoice(50000, "x", "pay me")["bolt11"]
    sim.send_payment(bolt11=bolt11, fee_msat=7)
    sim.send_payment(21000, destination=other.node_id)
    pays = rpc.listpays()["pays"]
    captured = fixture("listpays_a.json")["pays"]
    assert [keys(p) for p in pays] == [keys(captured[0]), keys(captured[1])]
    assert pays[0]["amount_sent_msat"] - pays[0]["amount_msat"] == 7
    sendpays = rpc.listsendpays()["payments"]
    captured = fixture("listsendpays_a.json")["payments"]
    assert [keys(p) for p in sendpays] == [keys(captured[0]), keys(captured[1])]
    assert [p["payment_hash"] for p in rpc.listpays(index="updated", start=2)["pays"]] == [
        pays[1]["payment_hash"]
    ]
    assert rpc.wait(subsystem="sendpays", indexname="updated", nextvalue=2)["updated"] == 2


def test_decode_real_invoice_exactly(rpc: LightningRpc) -> None:
    bolt11 = fixture("invoice_b.json")["bolt11"]
    assert rpc.decode(bolt11) == fixture("decode_b.json")


def test_delinvoice_errors(rpc: LightningRpc) -> None:
    rpc.invoice(1000, "d", "d")
    with pytest.raises(RpcError) as err:
        rpc.delinvoice("nope", "unpaid")
    assert err.value.error["code"] == 905
    with pytest.raises(RpcError) as err:
        rpc.delinvoice("d", "paid")
    assert err.value.error["code"] == 906
    assert err.value.error["data"] == {"current_status": "unpaid", "expected_status": "paid"}
    assert rpc.delinvoice("d", "unpaid")["label"] == "d"
    assert rpc.listinvoices()["invoices"] == []


def test_duplicate_label_and_long_description(rpc: LightningRpc) -> None:
    rpc.invoice(1000, "dup", "x")
    with pytest.raises(RpcError) as err:
        rpc.invoice(1000, "dup", "x")
    assert err.value.error["code"] == 900
    with pytest.raises(RpcError):
        rpc.invoice(1000, "long", "x" * 640)
    created = rpc.invoice(1000, "long", "x" * 640, deschashonly=True)
    assert "description_hash" in rpc.decode(created["bolt11"])


def raw_call(path: str, text: bytes) -> dict:
    """One request written as these exact bytes (pyln never writes a `\\u`)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        sock.sendall(text)
        buf = b""
        while b"\n\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, "the simulator hung up"
            buf += chunk
    return json.loads(buf)


def test_invoice_description_takes_utf8_not_u_escapes(sim: ClnSim, rpc: LightningRpc) -> None:
    """lightningd reads the description with param_escaped_string: UTF-8 and
    the short escapes, but "should be a string (without \\u)"."""
    request = {"jsonrpc": "2.0", "id": 1, "method": "invoice"}
    params = {"amount_msat": 1000, "label": "u", "description": "café"}
    escaped = json.dumps(request | {"params": params}).encode()
    assert b"\\u00e9" in escaped
    refused = raw_call(sim.socket_path, escaped)["error"]
    assert refused["code"] == -32602 and refused["message"].startswith("description: ")
    positional = json.dumps(request | {"params": [1000, "u", "café"]}).encode()
    assert raw_call(sim.socket_path, positional)["error"]["code"] == -32602
    assert "u" not in sim.invoices
    # A literal backslash-u is no escape; UTF-8 split across two reads is one character.
    literal = {**params, "label": "lit", "description": "C:\\users"}
    assert "result" in raw_call(sim.socket_path, json.dumps(request | {"params": literal}).encode())
    assert sim.invoices["lit"]["description"] == "C:\\users"
    utf8 = json.dumps(request | {"params": params}, ensure_ascii=False).encode()
    cut = utf8.index("é".encode()) + 1
    client, server = socket.socketpair()
    with client, server:
        reads = SplitReads(server, [utf8[:cut], utf8[cut:]])
        threading.Thread(target=sim._serve_conn, args=(reads,), daemon=True).start()
        client.settimeout(10)
        assert b"result" in client.recv(65536)
    assert rpc.listinvoices("u")["invoices"][0]["description"] == "café"


class SplitReads:
    """A connection whose first reads return these chunks, then the socket's."""

    def __init__(self, sock: socket.socket, chunks: list[bytes]) -> None:
        self.sock, self.chunks = sock, chunks

    def recv(self, size: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else self.sock.recv(size)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


def test_stop_removes_socket_and_restart_keeps_data(sim: ClnSim, rpc: LightningRpc) -> None:
    rpc.invoice(1000, "keep", "keep")
    sim.pay("keep")
    node_id = rpc.getinfo()["id"]
    sim.stop()
    assert not os.path.exists(sim.socket_path)
    with pytest.raises(OSError):
        rpc.getinfo()
    sim.start()
    sim.restart()
    assert rpc.getinfo()["id"] == node_id
    row = rpc.listinvoices("keep")["invoices"][0]
    assert row["status"] == "paid" and row["pay_index"] == 1
    rpc.invoice(1000, "next", "next")
    assert rpc.listinvoices("next")["invoices"][0]["created_index"] == 2


def test_old_version_lacks_wait_and_paging(tmp: Path) -> None:
    with ClnSim(tmp / "d", tmp / "s", version="v23.02.2") as sim:
        rpc = LightningRpc(sim.socket_path)
        rpc.invoice("100msat", "old", "old")
        sim.pay("old")
        with pytest.raises(RpcError) as err:
            rpc.wait(subsystem="invoices", indexname="updated", nextvalue=1)
        assert err.value.error["code"] == -32601
        with pytest.raises(RpcError):
            rpc.listinvoices(index="updated", start=1)
        row = rpc.listinvoices("old")["invoices"][0]
        assert row["amount_msat"] == "100msat" and "created_index" not in row


def test_slow_replies_still_answer(sim: ClnSim, rpc: LightningRpc) -> None:
    sim.reply_delay = 0.3
    assert rpc.getinfo()["alias"] == "SIM"


def test_cli_serves_socket_and_control_commands(tmp: Path) -> None:
    sock = str(tmp / "cli")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lnplugin_sim.cln_sim",
            "--data-dir",
            str(tmp / "d"),
            "--socket",
            sock,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening on" in (proc.stdout.readline() if proc.stdout else "")
        rpc = LightningRpc(sock)
        created = rpc.invoice(5000, "cli", "cli")
        assert rpc.call("sim-pay", {"invoice": created["bolt11"]})["status"] == "paid"
        ks = rpc.call("sim-keysend", {"amount_msat": 1000, "tlvs": {"7629169": b"hi".hex()}})
        assert ks["description"] == "keysend: hi"
        assert rpc.call("sim-send", {"amount_msat": 10, "fee_msat": 1})["status"] == "complete"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(sock)
