"""The LND simulator behaves like lnd where lnplugin depends on it
(docs/protocols.md, the "LND:" sections).

These talk to the simulator with the raw generated stubs over TLS, so they pin
the simulator itself; tests/test_lnd_node.py pins the adapter against it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bolt11 as pypi_bolt11
import grpc
import pytest

from lnplugin.nodes.lnd import LndNode
from lnplugin.nodes.lnd.rpc import invoices_pb2, invoices_pb2_grpc, lightning_pb2_grpc
from lnplugin.nodes.lnd.rpc import lightning_pb2 as ln
from lnplugin_sim.lnd_sim import LndSim, ip_lock, mint_macaroon, time_before

pytestmark = pytest.mark.timeout(60)
S = grpc.StatusCode
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[LndSim]:
    with LndSim(tmp_path / "lnd") as s:
        yield s


class Client:
    """Raw stub plus the macaroon metadata, as any lnd client would send it."""

    def __init__(self, sim: LndSim, macaroon: Path | None = None) -> None:
        self.channel = grpc.secure_channel(sim.target, grpc.ssl_channel_credentials(sim.cert_pem))
        self.stub = lightning_pb2_grpc.LightningStub(self.channel)
        mac = macaroon if macaroon is not None else sim.admin_macaroon_path
        self.md = (("macaroon", mac.read_bytes().hex()),)

    def __getattr__(self, name: str):
        method = getattr(self.stub, name)
        return lambda req, **kw: method(req, metadata=kw.pop("metadata", self.md), **kw)

    def stream(self, add_index: int = 0, settle_index: int = 0, window: float = 1.0) -> list:
        """Everything SubscribeInvoices sends within `window` seconds."""
        req = ln.InvoiceSubscription(add_index=add_index, settle_index=settle_index)
        out = []
        try:
            for inv in self.stub.SubscribeInvoices(req, metadata=self.md, timeout=window):
                out.append(inv)
        except grpc.RpcError as exc:
            if exc.code() != S.DEADLINE_EXCEEDED:
                raise
        return out


def code_of(fn) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code()


def brief(invs: list) -> list[tuple[int, int, str]]:
    return [(i.add_index, i.settle_index, ln.Invoice.InvoiceState.Name(i.state)) for i in invs]


def populate(sim: LndSim) -> None:
    """add 1 settled(s1), 2 open, 3 canceled, 4 settled(s2), 5 open."""
    sim.pay_invoice(sim.create_invoice(1000).r_hash)
    sim.create_invoice(2000)
    sim.cancel_invoice(sim.create_invoice(3000).r_hash)
    sim.pay_invoice(sim.create_invoice(4000).r_hash)
    sim.create_invoice(5000)


def test_subscribe_replay_semantics(sim: LndSim) -> None:
    populate(sim)
    c = Client(sim)
    # add backlog: current state, canceled dropped, settled included
    assert brief(c.stream(add_index=1)) == [(2, 0, "OPEN"), (4, 2, "SETTLED"), (5, 0, "OPEN")]
    assert brief(c.stream(settle_index=1)) == [(4, 2, "SETTLED")]
    # add backlog then settle backlog: invoice 4 comes twice
    assert brief(c.stream(add_index=3, settle_index=1)) == [
        (4, 2, "SETTLED"),
        (5, 0, "OPEN"),
        (4, 2, "SETTLED"),
    ]
    assert c.stream() == []  # 0 = no backlog, not "from the beginning"


def test_settle_backlog_in_add_order_like_the_sql_store(tmp_path: Path) -> None:
    sim = LndSim(tmp_path / "lnd", replay_order="add").start()
    try:
        made = [sim.create_invoice(1000 * (i + 1)) for i in range(3)]
        for inv in reversed(made):  # add 3 -> s1, add 2 -> s2, add 1 -> s3
            sim.pay_invoice(inv.r_hash)
        sim.settle_amp_set()  # s4: reported by no invoice
        sim.keysend(5000)  # add 4 -> s5
        c = Client(sim)
        by_add = [(1, 3, "SETTLED"), (2, 2, "SETTLED"), (4, 5, "SETTLED")]
        assert brief(c.stream(settle_index=1)) == by_add
        sim.replay_order = "settle"  # bbolt: by settle_index, the hole skipped
        assert brief(c.stream(settle_index=1)) == [by_add[1], by_add[0], by_add[2]]
    finally:
        sim.close()
    with pytest.raises(ValueError, match="replay_order"):
        LndSim(tmp_path / "bad", replay_order="random")
    again = LndSim(tmp_path / "lnd").start()  # reloaded: the hole is still a hole
    try:
        assert again.keysend(6000).settle_index == 6
    finally:
        again.close()


def _sets(inv: ln.Invoice) -> list[tuple[int, int, int, list[int]]]:
    """(settle_index, amt_paid_msat, htlc count, amounts of its HTLCs) per set."""
    return sorted(
        (
            state.settle_index,
            state.amt_paid_msat,
            len([h for h in inv.htlcs if h.amp.set_id.hex() == set_id]),
            sorted(h.amt_msat for h in inv.htlcs if h.amp.set_id.hex() == set_id),
        )
        for set_id, state in inv.amp_invoice_state.items()
    )


def test_amp_payment_sets_on_the_wire_as_lnd_sends_them(tmp_path: Path) -> None:
    """As lnd's CreateRPCInvoice and its two invoice stores give them
    (invoicesrpc/utils.go; channeldb/invoices.go; invoices/sql_store.go):
    ListInvoices shows an AMP invoice with every set and every HTLC (each
    marked with its set id) and settle_index 0; SubscribeInvoices sends one
    set at a time, live and in the backlog, with that set's state and HTLCs
    only; the bbolt backlog leaves the invoice's settle_index 0, the SQL
    store's (after every plain invoice) gives it the set's."""
    sim = LndSim(tmp_path / "lnd").start()
    try:
        c = Client(sim)
        amp = sim.add_invoice(ln.Invoice(value_msat=5000, is_amp=True))
        call = c.stub.SubscribeInvoices(ln.InvoiceSubscription(), metadata=c.md, timeout=10)
        sim.wait_for_subscribers(1)
        assert sim.settle_amp_set(amp.r_hash, 3000, parts=2) == 1
        sim.keysend(1000)  # s2
        spont = sim.amp_payment(2500, {7629169: b"{}"})  # s3, its own invoice
        live = [next(call) for _ in range(5)]  # added, s1, keysend added + s2, added + s3
        call.cancel()
        first, third = (i for i in live if i.is_amp and i.state == ln.Invoice.SETTLED)
        assert (first.settle_index, first.settle_date, first.r_preimage) == (0, 0, b"")
        assert _sets(first) == [(1, 3000, 2, [1500, 1500])]
        assert _sets(third) == [(3, 2500, 1, [2500])]
        assert [dict(h.custom_records) for h in third.htlcs] == [{7629169: b"{}"}]
        assert third.payment_request == "" and not third.is_keysend and not third.r_preimage
        assert third.r_hash == spont.r_hash
        sim.settle_amp_set(amp.r_hash, 2000)  # s4: the invoice's second set
        (listed, _, _) = c.ListInvoices(ln.ListInvoiceRequest()).invoices
        assert (listed.state, listed.settle_index, listed.amt_paid_msat) == (
            ln.Invoice.SETTLED,
            0,
            5000,
        )
        assert _sets(listed) == [(1, 3000, 2, [1500, 1500]), (4, 2000, 1, [2000])]
        assert all(len(h.amp.set_id) == 32 and h.amp.preimage for h in listed.htlcs)
        assert all(hashlib.sha256(h.amp.preimage).digest() == h.amp.hash for h in listed.htlcs)
        bbolt = c.stream(settle_index=1)  # by settle_index, each set on its own
        assert [(i.add_index, i.settle_index, _sets(i)) for i in bbolt] == [
            (2, 2, []),
            (3, 0, [(3, 2500, 1, [2500])]),
            (1, 0, [(4, 2000, 1, [2000])]),
        ]
        sim.replay_order = "add"  # SQL: plain invoices by add_index, then the sets
        sql = c.stream(settle_index=1)
        assert [(i.add_index, i.settle_index, _sets(i)) for i in sql] == [
            (2, 2, []),
            (3, 3, [(3, 2500, 1, [2500])]),
            (1, 4, [(4, 2000, 1, [2000])]),
        ]
        assert all(i.settle_date for i in sql)
    finally:
        sim.close()


def test_live_events_are_adds_and_settles_only(sim: LndSim) -> None:
    c = Client(sim)
    req = ln.InvoiceSubscription()
    call = c.stub.SubscribeInvoices(req, metadata=c.md, timeout=10)
    sim.wait_for_subscribers(1)
    inv = sim.create_invoice(1000)
    sim.cancel_invoice(sim.create_invoice(2000).r_hash)  # no event for the cancel
    sim.pay_invoice(inv.r_hash)
    sim.keysend(3000)  # keysend: OPEN then SETTLED
    got = [next(call) for _ in range(5)]
    call.cancel()
    assert brief(got) == [
        (1, 0, "OPEN"),
        (2, 0, "OPEN"),
        (1, 1, "SETTLED"),
        (3, 0, "OPEN"),
        (3, 2, "SETTLED"),
    ]
    keysend = got[-1]
    assert keysend.is_keysend and keysend.payment_request == "" and keysend.htlcs


def test_list_invoices_paging(sim: LndSim) -> None:
    for i in range(7):
        sim.create_invoice(1000 + i)
    sim.pay_invoice(sim.ledger.invoices[2].r_hash)
    c = Client(sim)
    page = c.ListInvoices(ln.ListInvoiceRequest(index_offset=2, num_max_invoices=3))
    assert [i.add_index for i in page.invoices] == [3, 4, 5]
    assert (page.first_index_offset, page.last_index_offset) == (3, 5)
    back = c.ListInvoices(ln.ListInvoiceRequest(reversed=True, num_max_invoices=2))
    assert [i.add_index for i in back.invoices] == [6, 7]
    back = c.ListInvoices(ln.ListInvoiceRequest(reversed=True, index_offset=6, num_max_invoices=2))
    assert [i.add_index for i in back.invoices] == [4, 5]
    pending = c.ListInvoices(ln.ListInvoiceRequest(pending_only=True))
    assert [i.add_index for i in pending.invoices] == [1, 2, 4, 5, 6, 7]
    empty = c.ListInvoices(ln.ListInvoiceRequest(index_offset=7))
    assert not empty.invoices and empty.last_index_offset == 0
    for _ in range(100):
        sim.keysend(1000)
    assert len(c.ListInvoices(ln.ListInvoiceRequest()).invoices) == 100  # lnd's default page


def test_list_payments(sim: LndSim) -> None:
    sim.make_payment(1000)
    sim.make_payment(2000, status="FAILED")
    sim.make_payment(3000, status="IN_FLIGHT")
    sim.make_payment(4000, custom_records={7629169: b"boost"})
    c = Client(sim)
    done = c.ListPayments(ln.ListPaymentsRequest(max_payments=10))
    assert [p.payment_index for p in done.payments] == [1, 4]
    every = c.ListPayments(ln.ListPaymentsRequest(include_incomplete=True, index_offset=1))
    assert [p.payment_index for p in every.payments] == [2, 3, 4]
    hop = done.payments[1].htlcs[0].route.hops[-1]
    assert hop.custom_records[7629169] == b"boost" and 5482373484 in hop.custom_records
    assert done.payments[1].status == ln.Payment.SUCCEEDED


def test_macaroon_permissions(sim: LndSim) -> None:
    admin, invoice = Client(sim), Client(sim, sim.invoice_macaroon_path)
    readonly = Client(sim, sim.readonly_macaroon_path)
    assert admin.GetInfo(ln.GetInfoRequest()).identity_pubkey == sim.pubkey
    assert code_of(lambda: invoice.GetInfo(ln.GetInfoRequest())) == S.PERMISSION_DENIED
    assert code_of(lambda: invoice.ListPayments(ln.ListPaymentsRequest())) == S.PERMISSION_DENIED
    invoice.AddInvoice(ln.Invoice(value_msat=1000))
    assert len(invoice.ListInvoices(ln.ListInvoiceRequest()).invoices) == 1
    readonly.ListPayments(ln.ListPaymentsRequest())
    assert code_of(lambda: readonly.AddInvoice(ln.Invoice())) == S.PERMISSION_DENIED
    assert code_of(lambda: admin.GetInfo(ln.GetInfoRequest(), metadata=())) == S.UNAUTHENTICATED
    wrong = (("macaroon", "00" * 40),)
    assert code_of(lambda: admin.GetInfo(ln.GetInfoRequest(), metadata=wrong)) == S.UNAUTHENTICATED
    sim.faults.error_style = "lnd"  # real lnd: plain errors, status UNKNOWN
    with pytest.raises(grpc.RpcError) as info:
        invoice.GetInfo(ln.GetInfoRequest())
    assert info.value.code() == S.UNKNOWN and info.value.details() == "permission denied"


def _refusal(client: Client, metadata: tuple[tuple[str, str], ...] | None = None) -> str:
    with pytest.raises(grpc.RpcError) as info:
        client.GetInfo(ln.GetInfoRequest(), metadata=client.md if metadata is None else metadata)
    assert info.value.code() == S.UNKNOWN
    return str(info.value.details())


def test_macaroons_lnd_refuses_outright_in_its_words(sim: LndSim, tmp_path: Path) -> None:
    """Each way real lnd refuses a macaroon itself, with its texts (lnd's
    macaroons/service.go, macaroons/store.go and macaroons/constraints.go,
    macaroon-bakery's oven and checker), apart from the bare "permission
    denied" of a valid macaroon that lacks the method's permission."""
    sim.faults.error_style = "lnd"
    admin = Client(sim)
    assert _refusal(admin, ()) == "expected 1 macaroon, got 0"
    with LndSim(tmp_path / "other") as other:
        foreign = Client(sim, other.admin_macaroon_path)
        assert (
            _refusal(foreign) == "verification failed: signature mismatch after caveat verification"
        )
    lost = tmp_path / "lost.macaroon"
    lost.write_bytes(mint_macaroon(frozenset({"info:read"}), root_key_id=b"7"))
    assert _refusal(Client(sim, lost)) == (
        "cannot retrieve macaroon: cannot get macaroon: root key with id 7 doesn't exist"
    )
    past = time_before(datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1))
    expired = Client(sim, sim.bake(["info:read"], "expired.macaroon", [past]))
    assert _refusal(expired) == f'caveat "{past}" not satisfied: macaroon has expired'
    elsewhere = Client(sim, sim.bake(["info:read"], "ip.macaroon", [ip_lock("192.0.2.1")]))
    assert _refusal(elsewhere) == (
        'caveat "ipaddr 192.0.2.1" not satisfied: macaroon locked to different IP address'
    )
    # Caveats that hold, and the refusal of a caveat before the permission, as bakery.
    future = time_before(datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1))
    here = Client(sim, sim.bake(["info:read"], "here.macaroon", [future, ip_lock("127.0.0.1")]))
    assert here.GetInfo(ln.GetInfoRequest()).identity_pubkey == sim.pubkey
    assert _refusal(Client(sim, sim.invoice_macaroon_path)) == "permission denied"
    old_invoice = Client(sim, sim.bake(["invoices:read"], "old.macaroon", [past]))
    assert "macaroon has expired" in _refusal(old_invoice)


def test_a_uri_permission_permits_exactly_its_method(tmp_path: Path) -> None:
    """As lnd's macaroon service: `uri:/lnrpc.Lightning/AddInvoice` allows that
    method and no other of invoices:write; an entity:action still covers every
    method that needs it. A baked macaroon outlives the simulator; one naming
    a method the node does not serve is refused at bake time, as lnd does."""
    sim = LndSim(tmp_path / "lnd").start()
    mac = sim.bake(["uri:/lnrpc.Lightning/AddInvoice", "info:read"], "one.macaroon")
    port = sim.port
    sim.close()
    sim = LndSim(tmp_path / "lnd", port=port).start()
    try:
        one = Client(sim, mac)
        one.AddInvoice(ln.Invoice(value_msat=1000))
        one.GetInfo(ln.GetInfoRequest())
        assert code_of(lambda: one.ListInvoices(ln.ListInvoiceRequest())) == S.PERMISSION_DENIED
        holds = invoices_pb2_grpc.InvoicesStub(one.channel)
        cancel = invoices_pb2.CancelInvoiceMsg(payment_hash=b"\x00" * 32)
        assert code_of(lambda: holds.CancelInvoice(cancel, metadata=one.md)) == S.PERMISSION_DENIED
        with pytest.raises(ValueError, match="must be an existing URI"):
            sim.bake(["uri:/lnrpc.Lightning/LookupInvoices"])
        with pytest.raises(ValueError, match="cannot be empty"):
            sim.bake([])
    finally:
        sim.close()


def test_add_invoice_validation_and_real_bolt11(sim: LndSim) -> None:
    c = Client(sim)
    resp = c.AddInvoice(ln.Invoice(value_msat=42_000, memo="real"))
    decoded = pypi_bolt11.decode(resp.payment_request)  # independent signature check
    assert decoded.payee == sim.pubkey and decoded.payment_hash == resp.r_hash.hex()
    assert decoded.amount_msat == 42_000 and decoded.description == "real"
    preimage = b"\x01" * 32
    c.AddInvoice(ln.Invoice(value=1, r_preimage=preimage))
    assert code_of(lambda: c.AddInvoice(ln.Invoice(r_preimage=preimage))) == S.ALREADY_EXISTS
    assert code_of(lambda: c.AddInvoice(ln.Invoice(value=1, value_msat=1000))) == S.UNKNOWN
    missing = ln.PaymentHash(r_hash=b"\x00" * 32)
    assert code_of(lambda: c.LookupInvoice(missing)) == S.NOT_FOUND


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"value": 1, "value_msat": 1000}, "value and value_msat are mutually exclusive"),
        ({"value_msat": -1}, "payments of negative value are not allowed"),
        ({"memo": "x" * 1025}, "memo too large: max 1024 bytes"),
        ({"description_hash": b"\x01" * 31}, "description hash is 32 bytes"),
    ],
)
def test_add_invoice_and_add_hold_invoice_refuse_alike(
    sim: LndSim, fields: dict, message: str
) -> None:
    """Both calls check amount, memo and description hash the same way,
    each refusal an UNKNOWN with lnd's message."""
    c = Client(sim)
    holds = invoices_pb2_grpc.InvoicesStub(c.channel)
    calls = [
        lambda: c.AddInvoice(ln.Invoice(**fields)),
        lambda: holds.AddHoldInvoice(
            invoices_pb2.AddHoldInvoiceRequest(hash=b"\x02" * 32, **fields), metadata=c.md
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert (info.value.code(), info.value.details()) == (S.UNKNOWN, message)


def test_restart_keeps_data_cert_and_port(tmp_path: Path) -> None:
    sim = LndSim(tmp_path / "lnd", network="signet").start()
    sim.keysend(1000)
    sim.make_payment(500)
    port, cert, mac = sim.port, sim.cert_pem, sim.admin_macaroon_path.read_bytes()
    pubkey = sim.pubkey
    sim.close()
    again = LndSim(tmp_path / "lnd", port=port, network="signet").start()
    try:
        assert (again.port, again.cert_pem, again.pubkey) == (port, cert, pubkey)
        assert again.admin_macaroon_path.read_bytes() == mac
        again.keysend(2000)
        c = Client(again)
        assert brief(c.stream(settle_index=0, add_index=1)) == [(2, 2, "SETTLED")]
        assert len(c.ListPayments(ln.ListPaymentsRequest()).payments) == 1
    finally:
        again.close()


def test_faults(sim: LndSim) -> None:
    for i in range(5):
        sim.keysend(1000 + i)
    c = Client(sim)
    sim.faults.duplicate_every = 1
    assert [i.settle_index for i in c.stream(settle_index=3)] == [4, 4, 5, 5]
    sim.faults.duplicate_every = 0
    sim.faults.drop_stream_after = 2
    with pytest.raises(grpc.RpcError) as info:
        c.stream(settle_index=1)
    assert info.value.code() == S.UNAVAILABLE
    sim.faults.drop_stream_after = None
    sim.faults.unavailable_for(30)
    assert code_of(lambda: c.GetInfo(ln.GetInfoRequest())) == S.UNAVAILABLE
    sim.faults.unavailable_until = 0
    sim.faults.delay = 0.05
    assert c.GetInfo(ln.GetInfoRequest()).alias == "lnd-sim"


def test_streams_a_large_backlog(sim: LndSim) -> None:
    sim.keysend(1000)
    last = sim.bulk_settle(10_000)
    assert last == 10_001
    c = Client(sim)
    req = ln.InvoiceSubscription(settle_index=1)
    call = c.stub.SubscribeInvoices(req, metadata=c.md, timeout=30)
    count = 0
    for inv in call:
        count += 1
        if inv.settle_index == last:
            break
    call.cancel()
    assert count == 10_000


def test_cli_serves_a_node_lnplugin_can_use(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lnplugin_sim.lnd_sim",
            "--data-dir",
            str(tmp_path / "cli"),
            "--port",
            "0",
            "--control-port",
            "0",
            "--replay-order",
            "add",
        ],
        cwd=ROOT,  # lnplugin_sim is importable from the checkout, not installed
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info: dict[str, str] = {}
        for line in proc.stdout:
            if line.startswith("try:"):
                break
            key, _, value = line.strip().partition(": ")
            info[key] = value
        node = LndNode(
            info["host"], cert=info["tls_cert"], macaroon=info["admin_macaroon"], network="regtest"
        )
        body = json.dumps({"amount_msat": 2100, "custom_records": {"7629169": b"hi".hex()}})
        req = urllib.request.Request(info["control"] + "/keysend", data=body.encode())
        with urllib.request.urlopen(req, timeout=10) as resp:
            paid = json.load(resp)
        assert paid["state"] == "SETTLED" and paid["settle_index"] == 1
        (update,) = list(node.settled_since(0))
        assert update.invoice.custom_records[7629169] == b"hi"
        node.close()
        body = json.dumps({"count": 50, "shuffle": True})
        req = urllib.request.Request(info["control"] + "/bulk_settle", data=body.encode())
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.load(resp) == {"settle_index": 51}
        c = grpc.secure_channel(
            info["host"], grpc.ssl_channel_credentials(Path(info["tls_cert"]).read_bytes())
        )
        md = (("macaroon", Path(info["admin_macaroon"]).read_bytes().hex()),)
        stream = lightning_pb2_grpc.LightningStub(c).SubscribeInvoices(
            ln.InvoiceSubscription(settle_index=1), metadata=md
        )
        backlog = [next(stream) for _ in range(50)]
        stream.cancel()
        c.close()
        assert [i.add_index for i in backlog] == list(range(2, 52))  # --replay-order add
        assert sorted(i.settle_index for i in backlog) == list(range(2, 52))
        assert [i.settle_index for i in backlog] != list(range(2, 52))  # shuffled
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_single_invoice_stream_ends_after_a_final_state(sim: LndSim) -> None:
    """lnd's SubscribeSingleInvoice returns (status OK) once it sent a SETTLED
    or CANCELED invoice (lnrpc/invoicesrpc/invoices_server.go, `IsFinal`),
    the current state included: one already settled gets one message."""
    c = Client(sim)
    inv = invoices_pb2_grpc.InvoicesStub(c.channel)
    settled = sim.create_invoice(1000)
    sim.pay_invoice(settled.r_hash)
    req = invoices_pb2.SubscribeSingleInvoiceRequest(r_hash=settled.r_hash)
    got = list(inv.SubscribeSingleInvoice(req, metadata=c.md, timeout=10))
    assert brief(got) == [(1, 1, "SETTLED")]
    held = sim.create_invoice(2000)
    call = inv.SubscribeSingleInvoice(
        invoices_pb2.SubscribeSingleInvoiceRequest(r_hash=held.r_hash), metadata=c.md, timeout=10
    )
    assert brief([next(call)]) == [(2, 0, "OPEN")]
    sim.cancel_invoice(held.r_hash)
    assert brief(list(call)) == [(2, 0, "CANCELED")]  # and then the stream ends


def test_a_canceled_hold_invoice_keeps_what_was_paid(sim: LndSim) -> None:
    """lnd's cancel leaves amt_paid as it was (invoices/update_invoice.go,
    cancelInvoice recomputes nothing): a hold invoice canceled while
    ACCEPTED still shows the held amount, its HTLCs CANCELED."""
    c = Client(sim)
    preimage = bytes(range(32))
    r_hash = hashlib.sha256(preimage).digest()
    sim.add_hold_invoice(invoices_pb2.AddHoldInvoiceRequest(hash=r_hash))
    sim.pay_invoice(r_hash, amount_msat=5000)
    sim.cancel_invoice(r_hash)
    got = c.LookupInvoice(ln.PaymentHash(r_hash=r_hash))
    assert got.state == ln.Invoice.CANCELED
    assert (got.amt_paid_msat, got.amt_paid_sat) == (5000, 5)
    assert [h.state for h in got.htlcs] == [ln.CANCELED]
