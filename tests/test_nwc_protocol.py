"""NIP-47 rules without I/O (lnplugin/nwc/protocol.py), and the encryption
library checked against the official NIP-44 v2 test vectors.

The vectors file is paulmillr/nip44's `nip44.vectors.json` (commit
671a1f04, the vectors NIP-44 links to), kept as is in tests/fixtures.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nostr_sdk as ns
import pytest

from lnplugin import compactjson
from lnplugin.nwc import protocol as p
from lnplugin.nwc.worker import RateLimiter
from lnplugin.store.models import FIELDS, StoredInvoice

VECTORS = json.loads((Path(__file__).parent / "fixtures" / "nip44.vectors.json").read_text())["v2"]


def keys(secret_hex: str) -> ns.Keys:
    return ns.Keys(ns.SecretKey.parse(secret_hex))


# -- NIP-44 v2 vectors ------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["valid"]["encrypt_decrypt"])
def test_nip44_vectors_decrypt_to_their_plaintext_from_either_side(vector: dict[str, Any]) -> None:
    one, two = keys(vector["sec1"]), keys(vector["sec2"])
    assert two.nip44_decrypt(one.public_key(), vector["payload"]) == vector["plaintext"]
    assert one.nip44_decrypt(two.public_key(), vector["payload"]) == vector["plaintext"]
    # Our own encryption (random nonce) decrypts on the other side.
    mine = one.nip44_encrypt(two.public_key(), vector["plaintext"])
    assert mine != vector["payload"]
    assert two.nip44_decrypt(one.public_key(), mine) == vector["plaintext"]


# lnplugin's own NIP-44 encryption (lnplugin/nwc/protocol.py: a conversation key
# cached per app, so a fan-out to many apps does not derive one per event).


@pytest.mark.parametrize("vector", VECTORS["valid"]["get_conversation_key"])
def test_our_conversation_keys_are_the_vectors(vector: dict[str, Any]) -> None:
    assert p.conversation_key(vector["sec1"], vector["pub2"]).hex() == vector["conversation_key"]


@pytest.mark.parametrize("vector", VECTORS["valid"]["encrypt_decrypt"])
def test_our_nip44_encryption_gives_the_vectors_payloads(vector: dict[str, Any]) -> None:
    one, two = keys(vector["sec1"]), keys(vector["sec2"])
    key = p.conversation_key(vector["sec1"], two.public_key().to_hex())
    assert key.hex() == vector["conversation_key"]
    nonce = bytes.fromhex(vector["nonce"])
    assert p.nip44_encrypt(key, vector["plaintext"], nonce) == vector["payload"]
    # With a random nonce, nostr-sdk decrypts it on the other side.
    mine = p.encrypt(one, two.public_key(), p.NIP44, vector["plaintext"])
    assert two.nip44_decrypt(one.public_key(), mine) == vector["plaintext"]


@pytest.mark.parametrize(("length", "padded"), VECTORS["valid"]["calc_padded_len"])
def test_our_padding_is_the_vectors(length: int, padded: int) -> None:
    assert p._padded_length(length) == padded


@pytest.mark.parametrize("plain", ["a", "x" * 15, "x" * 16, "ünïcødé 🙂" * 40, "x" * 5000])
def test_our_nip04_encryption_decrypts_with_nostr_sdk(plain: str) -> None:
    one, two = keys("01" * 32), keys("03" * 32)
    mine = p.encrypt(one, two.public_key().to_hex(), p.NIP04, plain)
    assert two.nip04_decrypt(one.public_key(), mine) == plain


def test_our_nip44_refuses_empty_and_oversized_messages() -> None:
    key = p.conversation_key("01" * 32, keys("02" * 32).public_key().to_hex())
    for plain in ("", "x" * 65536):
        with pytest.raises(ValueError):
            p.nip44_encrypt(key, plain)


# Vectors longer than 65535 bytes describe the padding function only: no NIP-44 message may
# be that long (the encrypt_msg_lengths vectors below check that such a message is refused).
@pytest.mark.parametrize(
    ("length", "padded"),
    [(n, p) for n, p in VECTORS["valid"]["calc_padded_len"] if n <= 65535],
)
def test_nip44_payloads_are_padded_as_the_vectors_say(length: int, padded: int) -> None:
    one, two = keys("01" * 32), keys("02" * 32)
    raw = base64.b64decode(one.nip44_encrypt(two.public_key(), "x" * length))
    # version (1) + nonce (32) + length prefix (2) + padded plaintext + MAC (32)
    assert len(raw) - 67 == padded


@pytest.mark.parametrize("vector", VECTORS["invalid"]["get_conversation_key"])
def test_nip44_refuses_the_invalid_keys_of_the_vectors(vector: dict[str, Any]) -> None:
    with pytest.raises(Exception):  # noqa: B017 - the bindings raise their own error types
        keys(vector["sec1"]).nip44_encrypt(ns.PublicKey.parse(vector["pub2"]), "hi")


@pytest.mark.parametrize("length", VECTORS["invalid"]["encrypt_msg_lengths"])
def test_nip44_refuses_message_lengths_the_vectors_call_invalid(length: int) -> None:
    one, two = keys("01" * 32), keys("02" * 32)
    with pytest.raises(Exception):  # noqa: B017
        one.nip44_encrypt(two.public_key(), "x" * length)


@pytest.mark.parametrize("vector", VECTORS["invalid"]["decrypt"])
def test_nip44_refuses_the_vectors_undecryptable_payloads(vector: dict[str, Any]) -> None:
    one, two = keys("01" * 32), keys("02" * 32)
    with pytest.raises(Exception):  # noqa: B017
        one.nip44_decrypt(two.public_key(), vector["payload"])


# -- requests ---------------------------------------------------------------------


def signed(event: p.SignedEvent) -> ns.Event:
    """What a client reads: nostr-sdk parses the event and checks id and signature."""
    parsed = ns.Event.from_json(event.json)
    assert parsed.verify() and parsed.id().to_hex() == event.id
    assert parsed.author().to_hex() == SERVICE.public_key().to_hex()
    return parsed


SERVICE, APP = keys("11" * 32), keys("22" * 32)


def request_event(
    body: dict[str, Any] | str,
    *,
    encryption: str | None = p.NIP44,
    to: ns.Keys = SERVICE,
    author: ns.Keys = APP,
    extra: Sequence[list[str]] = (),
    kind: int = p.REQUEST,
) -> ns.Event:
    plain = body if isinstance(body, str) else json.dumps(body)
    scheme = encryption if encryption in p.ENCRYPTIONS else p.NIP04
    content = p.encrypt(author, to.public_key(), scheme, plain)
    tags = [["p", to.public_key().to_hex()], *extra]
    if encryption is not None:
        tags.append(["encryption", encryption])
    builder = ns.EventBuilder(ns.Kind(kind), content).tags([ns.Tag.parse(t) for t in tags])
    return author.sign_event(builder.finalize_unsigned(author.public_key()))


def test_a_nip44_request_is_read_and_answered_with_nip44() -> None:
    event = request_event({"method": "get_info", "params": {}})
    request = p.read_request(p.parse_event(event.as_json()), SERVICE, int(time.time()))
    assert (request.method, request.encryption) == ("get_info", p.NIP44)
    assert request.app_pubkey == APP.public_key().to_hex()
    answer = signed(p.response_event(SERVICE, request, p.result("get_info", {"x": 1})))
    tags = [t.to_vec() for t in answer.tags()]
    assert ["p", request.app_pubkey] in tags and ["e", request.event_id] in tags
    assert answer.kind().as_u16() == p.RESPONSE
    plain = json.loads(APP.nip44_decrypt(SERVICE.public_key(), answer.content()))
    assert plain == {"result_type": "get_info", "error": None, "result": {"x": 1}}


def test_a_request_without_an_encryption_tag_is_nip04_both_ways() -> None:
    event = request_event({"method": "get_info"}, encryption=None)
    request = p.read_request(event, SERVICE, int(time.time()))
    assert request.encryption == p.NIP04
    answer = signed(p.response_event(SERVICE, request, p.result("get_info", {})))
    assert json.loads(APP.nip04_decrypt(SERVICE.public_key(), answer.content()))["error"] is None


def test_an_unknown_encryption_is_refused_with_unsupported_encryption() -> None:
    event = request_event({"method": "get_info"}, encryption="nip99")
    with pytest.raises(p.Refused) as caught:
        p.read_request(event, SERVICE, int(time.time()))
    assert caught.value.refusal.code == "UNSUPPORTED_ENCRYPTION"


def test_an_expired_request_is_dropped_and_an_unexpired_one_read() -> None:
    now = int(time.time())
    old = request_event({"method": "get_info"}, extra=[["expiration", str(now - 1)]])
    with pytest.raises(p.Drop, match="expired"):
        p.read_request(old, SERVICE, now)
    fresh = request_event({"method": "get_info"}, extra=[["expiration", str(now + 60)]])
    assert p.read_request(fresh, SERVICE, now).method == "get_info"
    # NIP-47: ignored when received *after* the expiration; in its own second, not yet.
    boundary = request_event({"method": "get_info"}, extra=[["expiration", str(now)]])
    assert p.read_request(boundary, SERVICE, now).method == "get_info"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (lambda: request_event({"method": "get_info"}, to=APP), "another wallet"),
        (lambda: request_event({"method": "get_info"}, kind=1), "not a request"),
        (lambda: request_event("not json"), "undecryptable"),
        (lambda: request_event({"params": {}}), "no method"),
        (lambda: request_event({"method": "x", "params": {"m": "a" * p.MAX_CONTENT}}), "cap"),
    ],
)
def test_requests_that_cannot_be_answered_are_dropped(event: Any, reason: str) -> None:
    with pytest.raises(p.Drop, match=reason):
        p.read_request(p.parse_event(event().as_json()), SERVICE, int(time.time()))


def test_a_forged_signature_is_dropped() -> None:
    raw = json.loads(request_event({"method": "get_info"}).as_json())
    raw["sig"] = "00" * 64
    with pytest.raises(p.Drop):
        p.parse_event(raw)


def test_scopes_give_the_methods_the_issue_maps_them_to() -> None:
    assert p.methods_for(frozenset({"invoices:create"})) == ["get_info", "make_invoice"]
    assert p.methods_for(frozenset({"invoices:read"})) == [
        "get_info",
        "lookup_invoice",
        "list_transactions",
    ]


def test_the_info_event_lists_methods_encryptions_and_notifications() -> None:
    info = signed(p.info_event(SERVICE))
    tags = {t.to_vec()[0]: t.to_vec()[1:] for t in info.tags()}
    assert info.kind().as_u16() == p.INFO
    assert tags["encryption"] == ["nip44_v2 nip04"]
    assert tags["notifications"] == ["payment_received"]
    assert "pay_invoice" not in info.content().split()
    assert "make_hold_invoice" not in info.content().split()


def test_a_node_that_holds_invoices_offers_the_hold_methods_and_notification() -> None:
    info = signed(p.info_event(SERVICE, hold=True))
    tags = {t.to_vec()[0]: t.to_vec()[1:] for t in info.tags()}
    assert tags["notifications"] == ["payment_received hold_invoice_accepted"]
    assert info.content().split() == [
        "get_info",
        "make_invoice",
        "lookup_invoice",
        "list_transactions",
        "make_hold_invoice",
        "settle_hold_invoice",
        "cancel_hold_invoice",
        "notifications",
    ]
    assert p.methods_for(frozenset({"invoices:create"}), hold=True) == [
        "get_info",
        "make_invoice",
        "make_hold_invoice",
        "settle_hold_invoice",
        "cancel_hold_invoice",
    ]


def test_notifications_go_out_as_nip44_and_nip04() -> None:
    events = [
        signed(e)
        for e in p.notification_events(
            SERVICE, APP.public_key().to_hex(), "payment_received", {"a": 1}
        )
    ]
    assert [e.kind().as_u16() for e in events] == [23197, 23196]
    plain44 = APP.nip44_decrypt(SERVICE.public_key(), events[0].content())
    plain04 = APP.nip04_decrypt(SERVICE.public_key(), events[1].content())
    assert json.loads(plain44) == json.loads(plain04)
    assert json.loads(plain44)["notification_type"] == "payment_received"


def test_a_notification_carrying_what_orjson_refuses_is_still_sent_and_reads_back() -> None:
    # A payer writes the boostagram JSON: an integer beyond 64 bits or a lone
    # surrogate must not stop the notification (or every one queued behind it).
    hostile = {"metadata": {"boostagram": {"value_msat_total": 10**30, "message": "a\ud800b"}}}
    nip44, nip04 = [
        signed(e)
        for e in p.notification_events(
            SERVICE, APP.public_key().to_hex(), "payment_received", hostile
        )
    ]
    plain = APP.nip44_decrypt(SERVICE.public_key(), nip44.content())
    assert json.loads(plain)["notification"] == hostile
    assert APP.nip04_decrypt(SERVICE.public_key(), nip04.content()) == plain


# -- transactions -----------------------------------------------------------------


def invoice(**over: Any) -> StoredInvoice:
    row = dict.fromkeys(FIELDS)
    row.update(
        id=1,
        identifier="i",
        type="incoming",
        payment_hash="ab" * 32,
        payment_request="lnbcrt1",
        state="SETTLED",
        amount_msat=None,
        amount_received_msat=5000,
        fee_msat=0,
        created_at=100,
        expiry=60,
        expires_at=160,
        settled_at=120,
        preimage="cd" * 32,
        is_keysend=0,
        source="api",
        hold=0,
    )
    row.update(over)
    return StoredInvoice.from_row(row)


def test_a_boostagram_comment_and_payer_show_in_the_metadata() -> None:
    records = {"7629169": base64.b64encode(b'{"message":"hi"}').decode()}
    tx = p.transaction(
        invoice(
            boostagram='{"message":"hi"}',
            comment="nice",
            payer_name="Ann",
            custom_records=json.dumps(records),
        )
    )
    assert tx["amount"] == 5000 and tx["state"] == "settled" and tx["preimage"] == "cd" * 32
    meta = tx["metadata"]
    assert meta["boostagram"] == {"message": "hi"}
    assert meta["comment"] == "nice" and meta["payer_data"] == {"name": "Ann"}
    assert meta["tlv_records"] == [{"type": 7629169, "value": b'{"message":"hi"}'.hex()}]


def test_an_address_payment_names_its_payer_once_as_nip47_payer_data() -> None:
    """The callback keeps the payer data as received in `metadata.payer_data`
    (Alby's key); NIP-47's `payer_data` is built from the kinds the address
    asked for instead, so what a payer sent unasked is not passed on, and a
    client got the same payer under two keys before. An API caller's own
    `payerdata` key is metadata it made the invoice with, and stays."""
    received = {"name": "Ann", "x-extra": 1}
    meta = p.transaction(
        invoice(source="lnurl", payer_name="Ann", metadata=json.dumps({"payer_data": received}))
    )["metadata"]
    assert meta == {"payer_data": {"name": "Ann"}}
    own = p.transaction(invoice(metadata=json.dumps({"payerdata": "mine"})))["metadata"]
    assert own == {"payerdata": "mine"}


def test_metadata_over_4096_characters_is_dropped_and_open_invoices_hide_the_preimage() -> None:
    tx = p.transaction(invoice(state="OPEN", amount_msat=7000, comment="x" * 5000), now=150)
    assert tx["metadata"] == {} and "preimage" not in tx
    assert (tx["state"], tx["amount"]) == ("pending", 7000)


def test_an_unpaid_invoice_is_expired_from_its_expiry_on_not_from_the_next_sweep() -> None:
    # The fixture expires at 160; the store still says OPEN until the sweep runs.
    assert p.transaction(invoice(state="OPEN"), now=159)["state"] == "pending"
    assert p.transaction(invoice(state="OPEN"), now=160)["state"] == "expired"


def test_metadata_is_measured_as_the_compact_json_it_is_sent_as() -> None:
    # 1,008 characters compact; json.dumps' defaults would count 6,010 (\u00e9 escapes).
    assert p.metadata_fits({"c": "é" * 1000})
    assert p.metadata_fits({"c": "x" * 4088})  # {"c":"…"} is exactly 4096
    assert not p.metadata_fits({"c": "x" * 4089})


def test_the_rate_limiter_allows_a_burst_then_refills_with_time() -> None:
    limiter = RateLimiter(burst=3, per_second=1.0)
    assert [limiter.allow(1, 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow(2, 0.0)  # another connection has its own bucket
    assert limiter.allow(1, 1.0) and not limiter.allow(1, 1.0)


def test_the_connection_uri_is_what_nostr_sdk_parses() -> None:
    uri = p.connection_uri(SERVICE.public_key().to_hex(), ["ws://127.0.0.1:1"], "22" * 32)
    parsed = ns.NostrWalletConnectUri.parse(uri)
    assert parsed.public_key().to_hex() == SERVICE.public_key().to_hex()
    assert parsed.secret().to_hex() == "22" * 32


@pytest.mark.parametrize("scheme", p.ENCRYPTIONS)
def test_the_largest_answer_makes_an_event_relays_are_asked_to_take(scheme: str) -> None:
    """NIP-47 asks relays to take 64 KB, and rust-nostr's refuses events over
    65,536 bytes: an answer of `MAX_ANSWER` bytes, in either scheme, fits."""
    request = p.read_request(
        request_event({"method": "list_transactions"}, encryption=scheme),
        SERVICE,
        int(time.time()),
    )
    body = p.result("list_transactions", {"transactions": []})
    body["pad"] = "x" * (p.MAX_ANSWER - len(compactjson.dumps(body)) - len(',"pad":""'))
    assert len(compactjson.dumps(body).encode()) == p.MAX_ANSWER
    event = signed(p.response_event(SERVICE, request, body))
    assert len(event.as_json().encode()) <= 65536
    decrypt = APP.nip44_decrypt if scheme == p.NIP44 else APP.nip04_decrypt
    assert json.loads(decrypt(SERVICE.public_key(), event.content())) == body


def test_a_page_is_cut_to_the_longest_run_of_transactions_that_fits() -> None:
    txs = [
        p.transaction(invoice(id=i, description="d" * 600, comment="c" * 4000)) for i in range(20)
    ]
    page = p.fit_page("list_transactions", txs)
    size = len(compactjson.dumps(p.result("list_transactions", {"transactions": page})).encode())
    longer = p.result("list_transactions", {"transactions": txs[: len(page) + 1]})
    assert 0 < len(page) < 20 and page == txs[: len(page)]
    assert size <= p.MAX_ANSWER < len(compactjson.dumps(longer).encode())
    assert p.fit_page("list_transactions", txs[:3]) == txs[:3]


def boost(message: str) -> StoredInvoice:
    record = json.dumps({"podcast": "Pod", "message": message})
    return invoice(
        boostagram=record,
        custom_records=json.dumps({"7629169": base64.b64encode(record.encode()).decode()}),
    )


def test_a_boostagram_over_the_limit_loses_its_parsed_copy_then_its_records_then_all() -> None:
    # ~1,400 bytes: both copies are over 4096, the hex records alone fit.
    meta = p.transaction(boost("m" * 1400))["metadata"]
    assert "boostagram" not in meta and meta["tlv_records"][0]["type"] == 7629169
    # ~2,500 bytes: the hex alone is over, the parsed copy fits.
    meta = p.transaction(boost("m" * 2500))["metadata"]
    assert "tlv_records" not in meta and meta["boostagram"]["message"] == "m" * 2500
    assert p.transaction(boost("m" * 4100))["metadata"] == {}
    small = p.transaction(boost("m" * 100))["metadata"]
    assert set(small) == {"boostagram", "tlv_records"}


def test_recipient_data_is_the_lightning_address_with_the_public_domain() -> None:
    paid = invoice(lightning_address="pod")
    with_domain = p.transaction(paid, address_domain="pod.example.com")["metadata"]
    assert with_domain["recipient_data"] == {"identifier": "pod@pod.example.com"}
    held = p.notification("hold_invoice_accepted", paid, "pod.example.com")["metadata"]
    assert held["recipient_data"] == {"identifier": "pod@pod.example.com"}
    # No --public-url (a keysend attributed to the address): the username alone.
    assert p.transaction(paid)["metadata"]["recipient_data"] == {"identifier": "pod"}
