"""Plugin mode: `lnplugin-cln` as a real process driven over stdin/stdout like lightningd.

The plugin reaches the CLN simulator through its unix socket and serves the
API over HTTP; the driver calls `htlc_accepted` with payloads shaped like the
real v26.06.6 capture. Nothing of ours is mocked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from lnplugin.nodes.cln.plugin import PluginConfigError
from lnplugin.nodes.cln.tlv import encode_payload, parse_onion_payload
from lnplugin_sim.cln_plugin_driver import PluginDriver
from lnplugin_sim.cln_sim import ClnSim
from tests import e2e
from tests.e2e import BOOST, BOOST_BYTES, CHAT, Api, scalar, wait_for
from tests.helpers_webhooks import free_port

TOKEN_SHAPE = re.compile(r"lnp_[A-Za-z0-9_-]{40,}")

ACCOUNT = b"acct-42"
TIP = b"tip note"

tmp = e2e.fixture_tmp  # a short directory under /tmp


@pytest.fixture
def sim(tmp: Path) -> Iterator[ClnSim]:
    # 34349334 is even: like lightningd, the sim strips it unless accepted.
    with ClnSim(tmp / "sim", tmp / "rpc", accept_htlc_tlv_types=(34349334,)) as s:
        yield s


@pytest.fixture
def plugin(sim: ClnSim, tmp: Path) -> Iterator[PluginDriver]:
    driver = PluginDriver(sim, tmp / "lnp")
    driver.start()
    yield driver
    driver.shutdown()


@pytest.fixture
def api(plugin: PluginDriver) -> Iterator[Api]:
    token = plugin.admin_token
    # Neither this token nor any other token-shaped string reaches lightningd's
    # log ("lnp_" alone could also match a temp dir's name).
    leaked = [line for line in plugin.logs if token in line or TOKEN_SHAPE.search(line)]
    assert not leaked, "no token in the node log"
    client = Api(plugin.url, token)
    yield client
    client.close()


def _tu(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _boost_keysend(plugin: PluginDriver) -> str:
    """Keysend the boost and chat; the hook sees the HTLC before it settles."""
    return plugin.keysend(
        21000, {7629169: BOOST_BYTES, 34349334: CHAT, 696969: ACCOUNT, 7629171: TIP}
    )


def _unpaid_with_records(sim: ClnSim, label: str, records: dict[int, bytes]) -> tuple[str, str]:
    """An invoice made on the node and the hop payload of an HTLC paying it
    with `records`, not yet paid: (payment hash, payload)."""
    made = sim.dispatch("invoice", {"amount_msat": 30000, "label": label, "description": label})
    secret = bytes.fromhex(made["payment_secret"])
    fields = {2: _tu(30000), 4: _tu(119), 8: secret + _tu(30000)}
    return made["payment_hash"], encode_payload({**fields, **records})


def _boost_keysend_seen(plugin: PluginDriver, sim: ClnSim, api: Api) -> tuple[str, dict[str, Any]]:
    """Keysend the boost and chat and wait until the API shows the chat."""
    payment_hash = _boost_keysend(plugin)
    seen = wait_for(
        lambda: (i := api.incoming(payment_hash)) and i.get("keysend_message") and i, "keysend"
    )
    return payment_hash, seen


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _settled_event(plugin: PluginDriver, payment_hash: str) -> dict[str, Any]:
    """The invoice in the outbox's `invoice.incoming.settled` event (what a
    webhook receiver and an SSE client get)."""
    (payload,) = scalar(
        plugin.data_dir,
        "SELECT payload FROM events WHERE payment_hash = ? AND type = ?",
        payment_hash,
        "invoice.incoming.settled",
    )
    return dict(json.loads(payload)["data"])


# Every custom record `_boost_keysend` sends, as the API shows them (base64).
SENT_RECORDS = {
    "696969": _b64(ACCOUNT),
    "7629169": _b64(BOOST_BYTES),
    "7629171": _b64(TIP),
    "34349334": _b64(CHAT),
}


def test_manifest_declares_options_hook_and_shutdown(plugin: PluginDriver) -> None:
    manifest = plugin.manifest
    names = {o["name"] for o in manifest["options"]}
    assert {"lnplugin-data-dir", "lnplugin-host", "lnplugin-port", "lnplugin-network"} <= names
    port = next(o for o in manifest["options"] if o["name"] == "lnplugin-port")
    assert port["type"] == "int"
    hooks = {h["name"]: h for h in manifest["hooks"]}
    assert hooks["htlc_accepted"]["after"] == ["keysend"]  # sees the payload keysend rewrote
    assert "shutdown" in manifest["subscriptions"]
    assert plugin.init_result is None  # not disabled
    status = plugin.call("lnplugin-status", {})
    assert status["running"] and status["url"] == plugin.url
    assert status["data_dir"] == str(plugin.data_dir)


def test_a_shutdown_while_the_plugin_is_still_starting_ends_it_cleanly(
    sim: ClnSim, tmp: Path
) -> None:
    """lightningd can send `shutdown` right after `init` (a node stopped as it
    starts), while the plugin's serving thread is still reaching the node:
    the plugin exits cleanly once its start is done. (Its handler once raised in that
    window and the plugin stayed up until killed; tests/test_service.py
    holds the service's side of it.)"""
    sim.reply_delay = 2.0  # the start's network check waits on the node
    driver = PluginDriver(sim, tmp / "lnp").start()
    assert driver.call("lnplugin-status", {})["running"]
    assert driver.shutdown(timeout=20) == 0
    assert "driver: plugin ignored shutdown, killed" not in driver.logs
    assert not [line for line in driver.logs if "Traceback" in line], driver.logs


def test_keysend_boostagram_and_message_visible_in_incoming(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    payment_hash, got = _boost_keysend_seen(plugin, sim, api)
    assert got["is_keysend"] is True and got["settled"] is True
    assert got["amount_received_msat"] == 21000
    assert got["boostagram"]["message"] == BOOST["message"]
    assert got["boostagram"]["feedID"] == 920666  # lenient parsing: digit strings become ints
    assert got["boostagram"]["value_msat_total"] == 21000
    assert got["keysend_message"] == CHAT.decode()
    assert got["custom_records"] == SENT_RECORDS
    # The preimage TLV is a secret, never stored; the protocol fields (< 65536) neither.
    assert "5482373484" not in got["custom_records"]
    # The lookup by hash shows the same row.
    assert api.get(f"/invoices/{payment_hash}")["boostagram"] == got["boostagram"]


def test_even_type_not_accepted_is_stripped_like_lightningd(tmp: Path) -> None:
    """Without `accept-htlc-tlv-type=34349334` the chat message never reaches us."""
    with ClnSim(tmp / "sim2", tmp / "rpc2") as sim, PluginDriver(sim, tmp / "lnp2") as plugin:
        assert plugin.admin_token
        api = Api(plugin.url, plugin.admin_token)
        payment_hash = _boost_keysend(plugin)
        got = wait_for(
            lambda: (i := api.incoming(payment_hash)) and i.get("boostagram") and i, "boost"
        )
        assert got["keysend_message"] is None
        assert "34349334" not in got["custom_records"]
        assert got["boostagram"]["sender_name"] == "@alice"
        api.close()


def test_hook_first_then_settlement_joins_records(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    """On a real node the hook runs before the invoice is paid: records wait for the row."""
    made = sim.dispatch(
        "invoice", {"amount_msat": 30000, "label": "outside-boost", "description": "pay me"}
    )
    payment_hash = made["payment_hash"]
    secret = bytes.fromhex(made["payment_secret"])
    payload = encode_payload(
        {2: _tu(30000), 4: _tu(119), 8: secret + _tu(30000), 7629169: BOOST_BYTES}
    )
    plugin.htlc_accepted(payment_hash, payload)
    captured = scalar(
        plugin.data_dir, "SELECT COUNT(*) FROM htlc_records WHERE payment_hash = ?", payment_hash
    )
    assert captured == (1,)
    sim.pay("outside-boost")
    got = wait_for(lambda: api.incoming(payment_hash), "the settled invoice")
    assert got["boostagram"]["podcast"] == "Lab Pod"
    assert got["custom_records"] == {"7629169": _b64(BOOST_BYTES)}
    assert got["description"] == "pay me" and got["amount_received_msat"] == 30000


def _after_payment(sim: ClnSim, payment_hash: str, records: dict[int, bytes]) -> str:
    """The hop payload of another HTLC for an invoice lightningd already
    paid: the paying HTLC's fields (amount, payment secret) with `records`.

    lightningd calls `htlc_accepted` for it and then fails it (the invoice is
    paid), so nobody paid for what it carries. Anyone who saw the BOLT11 (a
    checkout page) knows the secret; for a keysend, every node on the route
    learned the preimage, which CLN's keysend plugin lets through when its
    invoice already exists.
    """
    paying = sim.htlc_payload(payment_hash)
    assert paying is not None
    fields = {t: v for t, v in parse_onion_payload(paying).items() if t < 65536}
    return encode_payload({**fields, **records})


FORGED = json.dumps({**BOOST, "sender_name": "@mallory", "message": "send sats to mallory"})


def test_an_htlc_for_a_paid_keysend_cannot_rewrite_its_boost(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    payment_hash, first = _boost_keysend_seen(plugin, sim, api)
    stored = scalar(plugin.data_dir, "SELECT records FROM htlc_records")
    forged = {7629169: FORGED.encode(), 34349334: b"forged chat", 7629175: b"feed"}
    plugin.htlc_accepted(payment_hash, _after_payment(sim, payment_hash, forged))
    assert scalar(plugin.data_dir, "SELECT records FROM htlc_records") == stored
    got = api.get(f"/invoices/{payment_hash}")
    assert got["boostagram"] == first["boostagram"]
    assert got["boostagram"]["sender_name"] == "@alice"
    assert got["keysend_message"] == CHAT.decode()
    assert got["custom_records"] == first["custom_records"]


def test_an_htlc_for_a_paid_invoice_cannot_give_it_a_boost(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    created = api.post("/invoices", {"amount": 42, "description": "tip jar"})
    payment_hash = created["payment_hash"]
    plugin.pay(created["payment_request"])
    wait_for(lambda: api.settled(payment_hash), "settlement")
    forged = {7629169: FORGED.encode()}
    plugin.htlc_accepted(payment_hash, _after_payment(sim, payment_hash, forged))
    assert scalar(plugin.data_dir, "SELECT COUNT(*) FROM htlc_records") == (0,)
    got = api.get(f"/invoices/{payment_hash}")
    assert got["boostagram"] is None and not got["custom_records"]
    boosts = api.get("/invoices/incoming", params={"q[boostagram]": "true"})
    assert [i["payment_hash"] for i in boosts] == []


def test_invoice_created_over_http_is_settled(plugin: PluginDriver, sim: ClnSim, api: Api) -> None:
    created = api.post("/invoices", {"amount": 42, "description": "plugin mode"})
    plugin.pay(created["payment_request"])  # no custom records: nothing to store
    got = wait_for(lambda: api.settled(created["payment_hash"]), "settlement")
    assert got["amount_received_msat"] == 42000
    assert hashlib.sha256(bytes.fromhex(got["preimage"])).hexdigest() == created["payment_hash"]
    assert got["custom_records"] is None or got["custom_records"] == {}
    assert scalar(plugin.data_dir, "SELECT COUNT(*) FROM htlc_records") == (0,)


def test_hook_replayed_after_restart_still_once(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    payment_hash, first = _boost_keysend_seen(plugin, sim, api)
    token = plugin.admin_token
    assert token
    plugin.restart(replay=True)  # clean: shutdown notification, then replay
    plugin.restart(replay=True, clean=False)  # SIGKILL, then replay
    plugin.replay_hooks()  # and once more for good measure
    again = Api(plugin.url, token)
    got = wait_for(lambda: again.incoming(payment_hash), "the keysend after restarts")
    assert got["custom_records"] == first["custom_records"]
    assert got["boostagram"] == first["boostagram"]
    assert got["identifier"] == first["identifier"]
    counts = scalar(
        plugin.data_dir,
        "SELECT (SELECT COUNT(*) FROM invoices WHERE payment_hash = ?1),"
        " (SELECT COUNT(*) FROM events WHERE payment_hash = ?1 AND type = ?2),"
        " (SELECT COUNT(*) FROM htlc_records)",
        payment_hash,
        "invoice.incoming.settled",
    )
    assert counts == (1, 1, 1)
    incoming = again.get("/invoices/incoming")
    assert [i["payment_hash"] for i in incoming].count(payment_hash) == 1
    again.close()


def test_store_error_still_continues(plugin: PluginDriver, sim: ClnSim, api: Api) -> None:
    """A broken store never fails an HTLC: the hook logs and answers continue."""
    records = {7629169: BOOST_BYTES, 34349334: CHAT}
    payment_hash, payload = _unpaid_with_records(sim, "store-error", records)
    db_path = plugin.data_dir / "lnplugin.sqlite"
    conn = sqlite3.connect(db_path, timeout=10)
    try:
        conn.execute("ALTER TABLE htlc_records RENAME TO htlc_records_away")
        plugin.htlc_accepted(payment_hash, payload)  # raises unless the answer is continue
        assert any("could not store TLV records" in line for line in plugin.logs)

        conn.execute("ALTER TABLE htlc_records_away RENAME TO htlc_records")
        # A locked database is no store error: the hook gives up waiting after
        # its short busy timeout, answers continue and queues the records
        # (test_a_boost_that_arrives_while_the_store_is_busy_is_kept).
        conn.execute("BEGIN EXCLUSIVE")
        before = sum("could not store" in line for line in plugin.logs)
        plugin.htlc_accepted(payment_hash, payload)
        assert sum("could not store" in line for line in plugin.logs) == before
        assert any("queued, stored when the write lock frees" in line for line in plugin.logs)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    # lightningd replays an HTLC it has not resolved when it starts again:
    # once the store is healthy, that replay delivers the records.
    plugin.replay_hooks()
    sim.pay("store-error")
    got = wait_for(
        lambda: (i := api.incoming(payment_hash)) and i.get("keysend_message") and i, "records"
    )
    assert got["boostagram"]["message"] == BOOST["message"]


def test_a_boost_that_arrives_while_the_store_is_busy_is_kept(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    """Another writer (an export, a backup, the CLI, a long follower batch)
    holds the store's write lock for longer than the hook may wait. The
    hook still answers continue at once, and lightningd settles the
    keysend; its boostagram must not be lost for that, nor the settlement
    (and its webhook event) go out without it."""
    conn = sqlite3.connect(plugin.data_dir / "lnplugin.sqlite", timeout=10, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")  # the write lock, held across the whole keysend
        payment_hash = _boost_keysend(plugin)  # raises unless the hook answered continue
        stored = conn.execute("SELECT COUNT(*) FROM htlc_records").fetchone()
        assert stored == (0,)  # nothing could be written while the lock was held
        status = plugin.call("lnplugin-status", {})  # what the operator sees meanwhile
        assert status["queued_htlc_records"] == 1 and status["captured_htlc_records"] == 0
        assert any(f"TLV records for {payment_hash} queued" in line for line in plugin.logs)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    got = wait_for(lambda: api.settled(payment_hash), "the keysend's settlement")
    assert got["custom_records"] == SENT_RECORDS
    assert got["boostagram"]["message"] == BOOST["message"]
    assert got["keysend_message"] == CHAT.decode()
    assert _settled_event(plugin, payment_hash)["boostagram"]["message"] == BOOST["message"]
    assert not any("could not store" in line for line in plugin.logs)
    # Popped just after the commit that wrote them, so maybe a moment after it.
    wait_for(lambda: plugin.call("lnplugin-status", {})["queued_htlc_records"] == 0, "no queue")


def test_a_boost_queued_while_the_store_is_busy_survives_a_killed_plugin(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    """The hook answered `continue` (lightningd settled the keysend and will
    never call the hook for it again), then the plugin was killed before the
    write lock freed. The boostagram is not lost: it was on disk (the records
    journal) before the answer, and the next start stores it before the
    follower stores the settlement."""
    token = plugin.admin_token
    journal = plugin.data_dir / "htlc-records.jsonl"
    conn = sqlite3.connect(plugin.data_dir / "lnplugin.sqlite", timeout=10, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")  # the write lock, held until after the kill
        payment_hash = _boost_keysend(plugin)  # raises unless the hook answered continue
        assert (
            sim.dispatch("listinvoices", {"payment_hash": payment_hash})["invoices"][0]["status"]
            == "paid"
        )
        assert conn.execute("SELECT COUNT(*) FROM htlc_records").fetchone() == (0,)
        assert journal.stat().st_mode & 0o777 == 0o600
        (line,) = journal.read_text().splitlines()
        assert json.loads(line)["payment_hash"] == payment_hash
        plugin.kill()  # SIGKILL: nothing of the plugin's memory survives
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    plugin.start()  # no replay: lightningd resolved that HTLC before the kill
    again = Api(plugin.url, token)
    try:
        got = wait_for(lambda: again.settled(payment_hash), "the keysend's settlement")
    finally:
        again.close()
    assert got["custom_records"] == SENT_RECORDS
    assert got["boostagram"]["message"] == BOOST["message"]
    assert got["keysend_message"] == CHAT.decode()
    counts = scalar(
        plugin.data_dir,
        "SELECT (SELECT COUNT(*) FROM invoices WHERE payment_hash = ?1),"
        " (SELECT COUNT(*) FROM events WHERE payment_hash = ?1 AND type = ?2),"
        " (SELECT COUNT(*) FROM htlc_records WHERE payment_hash = ?1)",
        payment_hash,
        "invoice.incoming.settled",
    )
    assert counts == (1, 1, 1)
    assert _settled_event(plugin, payment_hash)["boostagram"]["message"] == BOOST["message"]
    # The entry leaves the journal once its write committed, just after.
    wait_for(lambda: not journal.exists(), "the journal emptied")
    assert plugin.call("lnplugin-status", {})["queued_htlc_records"] == 0


def test_unreadable_payloads_and_forwards_continue(plugin: PluginDriver, sim: ClnSim) -> None:
    payment_hash, payload = _unpaid_with_records(sim, "unreadable", {7629169: BOOST_BYTES})
    good = plugin.hook_params(payment_hash, payload)
    for bad in ("zz", "05ff", "", "0a" + "00" * 3):
        params = plugin.hook_params(payment_hash, payload)
        params["onion"]["payload"] = bad
        plugin.send_hook(params)
    assert any("unreadable onion payload" in line for line in plugin.logs)
    forward = plugin.hook_params(payment_hash, payload)
    forward["onion"]["short_channel_id"] = "1x2x3"  # not for us: never stored
    plugin.send_hook(forward)
    blinded = plugin.hook_params(payment_hash, payload)  # a blinded route names the next node
    blinded["onion"]["next_node_id"] = "02" + "33" * 32
    plugin.send_hook(blinded)
    assert scalar(plugin.data_dir, "SELECT COUNT(*) FROM htlc_records") == (0,)
    plugin.send_hook(good)
    assert scalar(plugin.data_dir, "SELECT COUNT(*) FROM htlc_records") == (1,)


def test_shutdown_notification_exits_cleanly(plugin: PluginDriver) -> None:
    url = plugin.url
    assert requests.get(url + "/health", timeout=10).status_code == 200
    assert plugin.shutdown() == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/health", timeout=10)


def test_network_mismatch_disables_the_plugin(sim: ClnSim, tmp: Path) -> None:
    driver = PluginDriver(sim, tmp / "mismatch", options={"lnplugin-network": "bitcoin"})
    driver.start()
    try:
        assert "regtest" in driver.init_result["disable"]
        assert driver.call("lnplugin-status", {}) == {"running": False}
        assert not (tmp / "mismatch" / "lnplugin.sqlite").exists()
    finally:
        driver.kill()


def test_a_data_dir_that_cannot_be_used_disables_the_plugin_in_one_line(
    sim: ClnSim, tmp: Path
) -> None:
    """lightningd's log gets one `broken` line naming the setting, not a traceback."""
    blocker = tmp / "afile"
    blocker.write_text("")
    driver = PluginDriver(sim, blocker)
    driver.start()
    try:
        reason = driver.init_result["disable"]
        assert reason.startswith("invalid setting data_dir (--data-dir / LNPLUGIN_DATA_DIR)")
        assert reason.endswith("; plugin disabled")
        assert not [line for line in driver.logs if "Traceback" in line]
        assert driver.call("lnplugin-status", {}) == {"running": False}
    finally:
        driver.kill()


def test_lnplugin_log_level_applies_in_plugin_mode(sim: ClnSim, tmp: Path) -> None:
    """As docs/cln.md says LNPLUGIN_* variables do: at `warning`, no info lines."""
    driver = PluginDriver(sim, tmp / "quiet", env={"LNPLUGIN_LOG_LEVEL": "warning"})
    driver.start()
    try:
        status = driver.call("lnplugin-status", {})
        assert status["running"] is True
        health = requests.get(status["url"] + "/health", timeout=10)
        assert health.status_code == 200
        assert not [line for line in driver.logs if "lnplugin.access" in line]
    finally:
        driver.kill()


def test_a_data_dir_already_served_disables_the_plugin(sim: ClnSim, tmp: Path) -> None:
    # One follower and webhook worker per store: the plugin says why and steps aside.
    data = tmp / "shared"
    with e2e.Server(data):
        driver = PluginDriver(sim, data)
        driver.start()
        try:
            assert "is already serving" in driver.init_result["disable"]
            assert driver.call("lnplugin-status", {}) == {"running": False}
        finally:
            driver.kill()


def test_the_public_url_option_turns_on_lightning_addresses(tmp: Path) -> None:
    from lnplugin.nodes.cln.plugin import settings_from_init

    config = {"lightning-dir": str(tmp), "rpc-file": "lightning-rpc", "network": "regtest"}
    given = settings_from_init({"lnplugin-public-url": "https://pay.example.com/"}, config, {})
    assert given.public_url == "https://pay.example.com"
    assert settings_from_init({}, config, {}).public_url is None


def test_the_zap_options_set_zaps_and_their_relay_allow_list(tmp: Path) -> None:
    """`--zaps` and `--zap-relay-allow` as CLN options; unset, the environment
    still applies beneath them, and `false` turns off what it turned on."""
    from lnplugin.nodes.cln.plugin import settings_from_init

    config = {"lightning-dir": str(tmp), "rpc-file": "lightning-rpc", "network": "regtest"}
    given = settings_from_init(
        {"lnplugin-zaps": True, "lnplugin-zap-relay-allow": "127.0.0.0/8, 10.0.0.0/8"}, config, {}
    )
    assert given.zaps is True
    assert given.zap_relay_allow == ("127.0.0.0/8", "10.0.0.0/8")
    # Older lightningd passes a bool option's value as a string.
    assert settings_from_init({"lnplugin-zaps": "true"}, config, {}).zaps is True
    unset = settings_from_init({}, config, {})
    assert unset.zaps is False and unset.zap_relay_allow == ()
    env = {"LNPLUGIN_ZAPS": "1", "LNPLUGIN_ZAP_RELAY_ALLOW": "192.168.0.0/16"}
    beneath = settings_from_init({"lnplugin-zaps": None}, config, env)
    assert beneath.zaps is True and beneath.zap_relay_allow == ("192.168.0.0/16",)
    assert settings_from_init({"lnplugin-zaps": False}, config, env).zaps is False
    with pytest.raises(PluginConfigError, match="zap_relay_allow"):
        settings_from_init({"lnplugin-zap-relay-allow": "not-a-cidr"}, config, {})


def test_the_zaps_option_offers_zaps_on_the_plugins_addresses(sim: ClnSim, tmp: Path) -> None:
    port = free_port()
    driver = PluginDriver(
        sim,
        tmp / "zaps",
        port=port,
        options={"lnplugin-zaps": True, "lnplugin-public-url": f"http://127.0.0.1:{port}"},
    )
    driver.start()
    try:
        manifest = {o["name"]: o for o in driver.manifest["options"]}
        assert manifest["lnplugin-zaps"]["type"] == "bool"
        assert "default" not in manifest["lnplugin-zaps"]  # unset: the environment decides
        assert manifest["lnplugin-zap-relay-allow"]["type"] == "string"
        assert driver.init_result is None
        api = Api(driver.url, driver.admin_token)
        made = api.post("/lightning_addresses", {"username": "alice", "description": "Tips"})
        assert made["username"] == "alice"
        found = requests.get(driver.url + "/.well-known/lnurlp/alice", timeout=10).json()
        assert found["allowsNostr"] is True and len(found["nostrPubkey"]) == 64
        api.close()
    finally:
        driver.shutdown()


def test_a_misspelt_lnplugin_variable_is_a_warning_in_lightningds_log(
    sim: ClnSim, tmp: Path
) -> None:
    """As in standalone mode: named, with the setting it resembles, and the plugin runs on."""
    driver = PluginDriver(sim, tmp / "typo", env={"LNPLUGIN_LOGLEVEL": "warning"})
    driver.start()
    try:
        assert driver.call("lnplugin-status", {})["running"] is True
        assert (
            "warn: LNPLUGIN_LOGLEVEL is not a setting lnplugin reads (ignored); "
            "did you mean LNPLUGIN_LOG_LEVEL?"
        ) in driver.logs
    finally:
        driver.kill()


def test_records_of_an_htlc_lightningd_cannot_parse_are_not_kept(
    plugin: PluginDriver, sim: ClnSim, api: Api
) -> None:
    """An even record the node was not told to accept makes lightningd fail
    the HTLC (the hook sees no `onion.type`): its records were never paid
    for, and must not turn up on the invoice a later payment settles."""
    created = api.post("/invoices", {"amount": 30, "description": "tip jar"})
    payment_hash = created["payment_hash"]
    forged = {7629169: FORGED.encode(), 133773310: b"not accepted"}
    made = next(r for r in sim.invoices.values() if r["payment_hash"] == payment_hash)
    fields = {2: _tu(30000), 4: _tu(119), 8: bytes.fromhex(made["payment_secret"]) + _tu(30000)}
    params = plugin.hook_params(payment_hash, encode_payload({**fields, **forged}))
    assert "type" not in params["onion"] and "payment_secret" not in params["onion"]
    plugin.send_hook(params)
    plugin.pay(created["payment_request"])
    wait_for(lambda: api.settled(payment_hash), "settlement")
    assert scalar(plugin.data_dir, "SELECT COUNT(*) FROM htlc_records") == (0,)
    got = api.get(f"/invoices/{payment_hash}")
    assert got["boostagram"] is None and not got["custom_records"]
