"""The `lnplugin` command line, through click's CliRunner (no subprocesses)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from lnplugin.nodes.base import InvoiceRequest
from lnplugin.nodes.dev import DevNode
from lnplugin.run.cli import cli
from lnplugin.store import Store, tokens


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No LNPLUGIN_* from the developer's shell, and a HOME that is not theirs."""
    for name in list(os.environ):
        if name.startswith("LNPLUGIN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def data_dir(tmp_path):
    return str(tmp_path / "data")


def run(*args: str, env: dict[str, str] | None = None, terminal_width: int | None = None):
    return CliRunner().invoke(
        cli, list(args), env=env, catch_exceptions=False, terminal_width=terminal_width
    )


def all_commands(group: click.Group = cli, prefix: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from all_commands(command, (*prefix, name))


# -- help --------------------------------------------------------------------------------------


def test_top_level_help_lists_every_command():
    result = run("--help")
    assert result.exit_code == 0
    for name in cli.commands:
        assert name in result.stdout


GROUPS = [(), *(p for p, c in all_commands() if isinstance(c, click.Group))]


@pytest.mark.parametrize("path", GROUPS, ids=[" ".join(p) or "lnplugin" for p in GROUPS])
def test_each_command_list_shows_whole_summaries(path):
    """`lnplugin --help` on an 80-column terminal: no summary cut to "...",
    the first thing a new operator reads."""
    result = run(*path, "--help", terminal_width=80)
    listed = result.stdout.split("Commands:\n", 1)[1].splitlines()
    assert listed
    cut = [line.strip() for line in listed if line.rstrip().endswith("...")]
    assert not cut, cut


@pytest.mark.parametrize(
    "path", [p for p, _ in all_commands()], ids=[" ".join(p) for p, _ in all_commands()]
)
def test_every_command_has_help(path):
    command = dict(all_commands())[path]
    result = run(*path, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.stdout
    assert command.help and command.help.split("\n")[0] in result.stdout


def test_status_help_says_host_and_port_are_where_to_ask():
    # `status` takes serve's options; "Port to listen on" there described a
    # command that listens on nothing.
    result = run("status", "--help")
    assert result.exit_code == 0
    assert "listen on" not in " ".join(result.stdout.split())
    assert "Port of the server to ask" in " ".join(result.stdout.split())


def test_version_is_printed():
    result = run("--version")
    assert result.exit_code == 0 and "lnplugin" in result.stdout


# -- tokens ------------------------------------------------------------------------------------


def test_token_create_prints_the_token_as_the_last_stdout_line(data_dir):
    result = run(
        "token", "create", "--scope", "invoices:read", "--label", "shop", "--data-dir", data_dir
    )
    assert result.exit_code == 0
    secret = result.stdout.strip().splitlines()[-1]
    assert secret.startswith(tokens.TOKEN_PREFIX)
    store = Store(os.path.join(data_dir, "lnplugin.sqlite"))
    info = tokens.verify(store.conn, secret)
    store.close()
    assert info is not None
    assert info.scopes == {"invoices:read"} and info.label == "shop"


def test_token_create_takes_several_scopes(data_dir):
    result = run(
        "token", "create", "--scope", "invoices:create", "--scope", "invoices:read",
        "--data-dir", data_dir,
    )  # fmt: skip
    assert result.exit_code == 0
    assert "invoices:create invoices:read" in result.stderr


def test_token_create_refuses_an_unknown_scope(data_dir):
    result = run("token", "create", "--scope", "invoices:write", "--data-dir", data_dir)
    assert result.exit_code != 0
    assert "unknown scope invoices:write" in result.stderr
    assert "invoices:create" in result.stderr  # lists the valid ones
    assert result.stdout == ""


def test_token_create_refuses_a_rate_that_allows_nothing(data_dir):
    result = run(
        "token", "create", "--scope", "admin", "--rate-limit", "0/second", "--data-dir", data_dir
    )
    assert result.exit_code != 0
    assert "--rate-limit" in result.stderr and "allows no request" in result.stderr
    assert result.stdout == ""


def test_nwc_connect_refuses_before_it_would_create_a_store(tmp_path):
    data = tmp_path / "mistyped"
    for args in (
        ("--scope", "invoices:write", "--nwc-relay", "ws://127.0.0.1:1"),
        ("--scope", "invoices:read"),
    ):
        result = run("nwc", "connect", *args, "--data-dir", str(data))
        assert result.exit_code != 0 and result.stdout == ""
    assert not data.exists()


@pytest.mark.parametrize(
    "args",
    [
        ("token", "revoke", "99999999999999999999999"),
        ("nwc", "revoke", "99999999999999999999999"),
        ("dev", "keysend", "--amount-msat", "99999999999999999999999"),
    ],
    ids=["token-id", "connection-id", "amount"],
)
def test_a_number_out_of_range_is_a_usage_error(data_dir, args):
    result = run(*args, "--data-dir", data_dir)
    assert result.exit_code == 2  # click's usage error, not an overflow in SQLite
    assert "is not in the range" in result.stderr


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (("token", "revoke", "one"), "'TOKEN_ID'"),
        (("nwc", "revoke", "#2"), "'CONNECTION_ID'"),
        (("dev", "keysend", "--amount-msat", "21k"), "'--amount-msat'"),
        (("dev", "pay", "--amount-msat", "1.5", "00" * 32), "'--amount-msat'"),
        (("dev", "mine", "--blocks", "ten"), "'--blocks'"),
    ],
)
def test_a_number_that_is_not_one_says_a_whole_number_is_wanted(data_dir, args, what):
    """Not click's "is not a valid integer range", which reads as if a range were asked for."""
    result = run(*args, "--data-dir", data_dir)
    assert result.exit_code == 2
    line = result.stderr.splitlines()[-1]
    assert line.startswith(f"Error: Invalid value for {what}: "), line
    assert line.endswith("is not a valid integer."), line


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("serve", "--port", "abc"), "'--port'"),
        (("serve", "--threads", "x"), "'--threads'"),
        (("export", "--since", "last week"), "--since"),
    ],
)
def test_a_bad_flag_value_is_one_line_naming_the_flag(data_dir, args, flag):
    """As the same value from the environment or the config file is."""
    result = run(*args, "--data-dir", data_dir)
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"Error: Invalid value for {flag}: ")


def test_token_create_needs_a_scope(data_dir):
    result = run("token", "create", "--data-dir", data_dir)
    assert result.exit_code != 0
    assert "--scope" in result.stderr


def test_token_list_never_shows_secrets(data_dir):
    secret = run("token", "create", "--scope", "admin", "--label", "ops", "--data-dir", data_dir)
    secret = secret.stdout.strip().splitlines()[-1]
    result = run("token", "list", "--data-dir", data_dir)
    assert result.exit_code == 0
    assert secret not in result.output
    assert secret[len(tokens.TOKEN_PREFIX) :][:8] not in result.output
    assert tokens.hash_token(secret) not in result.output
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith("1\tadmin\tops\t") and line.endswith("\tactive\trate default")


def test_token_revoke_stops_the_token_working(data_dir):
    secret = run("token", "create", "--scope", "admin", "--data-dir", data_dir).stdout.split()[-1]
    result = run("token", "revoke", "1", "--data-dir", data_dir)
    assert result.exit_code == 0 and "Revoked token 1" in result.stdout
    assert "revoked" in run("token", "list", "--data-dir", data_dir).stdout
    store = Store(os.path.join(data_dir, "lnplugin.sqlite"))
    assert tokens.verify(store.conn, secret) is None
    store.close()


def test_revoking_an_unknown_or_revoked_token_fails(data_dir):
    run("token", "create", "--scope", "admin", "--data-dir", data_dir)
    run("token", "revoke", "1", "--data-dir", data_dir)
    for token_id in ("1", "99"):
        result = run("token", "revoke", token_id, "--data-dir", data_dir)
        assert result.exit_code != 0
        assert f"no active token with id {token_id}" in result.stderr


def test_tokens_live_in_the_data_dir_given_by_the_environment(tmp_path):
    env = {"LNPLUGIN_DATA_DIR": str(tmp_path / "from-env")}
    assert run("token", "create", "--scope", "admin", env=env).exit_code == 0
    assert (tmp_path / "from-env" / "lnplugin.sqlite").exists()


# -- dev pay / dev keysend -----------------------------------------------------------------------


@pytest.fixture
def served_dir(data_dir):
    """A data dir with a store, as `lnplugin serve` leaves it: the dev commands
    refuse one without (a payment no server follows would reach nothing)."""
    Store(os.path.join(data_dir, "lnplugin.sqlite")).close()
    return data_dir


def mint(data_dir: str, amount_msat: int | None = 5000) -> str:
    node = DevNode(Path(data_dir))
    return node.create_invoice(InvoiceRequest(amount_msat=amount_msat)).payment_request


def test_dev_pay_settles_and_prints_json(served_dir):
    pr = mint(served_dir)
    result = run("dev", "pay", pr, "--data-dir", served_dir)
    assert result.exit_code == 0
    paid = json.loads(result.stdout)
    assert paid["state"] == "SETTLED" and paid["amount_received_msat"] == 5000


def test_dev_pay_twice_says_the_invoice_is_settled(served_dir):
    pr = mint(served_dir)
    run("dev", "pay", pr, "--data-dir", served_dir)
    result = run("dev", "pay", pr, "--data-dir", served_dir)
    assert result.exit_code != 0
    assert "is not open (it is settled)" in result.stderr


def test_dev_pay_an_amountless_invoice_asks_for_an_amount(served_dir):
    pr = mint(served_dir, None)
    result = run("dev", "pay", pr, "--data-dir", served_dir)
    assert result.exit_code != 0
    assert "no amount" in result.stderr and "amount_msat" in result.stderr
    ok = run("dev", "pay", pr, "--amount-msat", "777", "--data-dir", served_dir)
    assert json.loads(ok.stdout)["amount_received_msat"] == 777


def test_dev_pay_an_unknown_hash_says_so(served_dir):
    result = run("dev", "pay", "ab" * 32, "--data-dir", served_dir)
    assert result.exit_code != 0
    assert "no invoice with payment hash" in result.stderr


def test_dev_pay_garbage_says_what_it_expected(served_dir):
    result = run("dev", "pay", "hello", "--data-dir", served_dir)
    assert result.exit_code != 0
    assert "not a payment hash or a valid BOLT11 invoice" in result.stderr


def test_dev_pay_refuses_a_non_positive_amount(data_dir):
    result = run("dev", "pay", "ab" * 32, "--amount-msat", "0", "--data-dir", data_dir)
    assert result.exit_code == 2
    assert "--amount-msat" in result.stderr


def test_dev_keysend_records_text_and_hex(served_dir):
    result = run(
        "dev", "keysend", "--amount-msat", "21000",
        "--record", '7629169={"message": "hi"}', "--record", "696969=hex:00ff",
        "--data-dir", served_dir,
    )  # fmt: skip
    assert result.exit_code == 0
    paid = json.loads(result.stdout)
    assert paid["state"] == "SETTLED" and paid["amount_received_msat"] == 21000
    (update,) = DevNode(served_dir).settled_since(0)
    assert dict(update.invoice.custom_records) == {
        7629169: b'{"message": "hi"}',
        696969: b"\x00\xff",
    }


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("novalue", "expected TYPE=VALUE"),
        ("abc=1", "expected TYPE=VALUE"),
        ("100=x", ">= 65536"),
        ("7629169=hex:zz", "invalid hex"),
        ("\u00b2=x", "expected TYPE=VALUE"),  # isdigit() passes it, int() does not
        ("696969=\udcff", "lone surrogate"),  # a non-UTF-8 byte in argv
        ("18446744073709551616=x", "below 2^64"),  # a BigSize holds no more
        ("9" * 5000 + "=x", "below 2^64"),  # past what int() reads at all
    ],
)
def test_dev_keysend_explains_a_bad_record(data_dir, record, reason):
    result = run(
        "dev", "keysend", "--amount-msat", "1000", "--record", record, "--data-dir", data_dir
    )
    assert result.exit_code == 2
    assert reason in result.stderr and "--record" in result.stderr


def test_dev_keysend_needs_an_amount(data_dir):
    result = run("dev", "keysend", "--data-dir", data_dir)
    assert result.exit_code == 2
    assert "--amount-msat" in result.stderr


def test_a_payment_from_the_cli_reaches_a_running_service(data_dir):
    """`lnplugin dev pay` in one process, the follower in another: like a real network."""
    from lnplugin.config import load_settings
    from lnplugin.service import Service

    svc = Service.build(load_settings({"data_dir": data_dir}, environ={}))
    svc.start()
    try:
        pr = svc.node.create_invoice(InvoiceRequest(amount_msat=1000)).payment_request
        assert run("dev", "pay", pr, "--data-dir", data_dir).exit_code == 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            row = svc.store.conn.execute("SELECT state FROM invoices").fetchone()
            if row is not None and row[0] == "SETTLED":
                break
            time.sleep(0.02)
        assert row is not None and row[0] == "SETTLED"
    finally:
        svc.stop()


# -- decode ------------------------------------------------------------------------------------


def test_decode_prints_alby_decode_json(data_dir):
    pr = mint(data_dir, 21_000)
    result = run("decode", pr)
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["amount"] == 21 and data["msatoshi"] == 21_000
    assert data["payee"] == DevNode(data_dir).pubkey
    assert data["currency"] == "bcrt"


def test_decode_accepts_a_lightning_prefix(data_dir):
    assert run("decode", "lightning:" + mint(data_dir)).exit_code == 0


def test_decode_of_a_bad_invoice_fails_with_the_reason():
    result = run("decode", "lnbc1nonsense")
    assert result.exit_code != 0
    assert "invalid invoice" in result.stderr
    assert "Traceback" not in result.output


# -- invalid settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "setting"),
    [
        (("serve", "--port", "70000"), {}, "port"),
        (("serve", "--node", "eclair"), {}, "node"),
        (("serve", "--network", "mainnet"), {}, "network"),
        (("serve", "--webhook-allow", "nope"), {}, "webhook_allow"),
        (("serve", "--webhook-retry-schedule", "x"), {}, "webhook_retry_schedule"),
        (("token", "list"), {"LNPLUGIN_NODE": "eclair"}, "node"),
        (("dev", "pay", "ab" * 32), {"LNPLUGIN_NETWORK": "moon"}, "network"),
        (("token", "list", "--config", "/nonexistent/lnplugin.toml"), {}, "config"),
    ],
    ids=[
        "port",
        "node",
        "network",
        "webhook_allow",
        "retry-schedule",
        "env-node",
        "env-network",
        "missing-config",
    ],
)
def test_an_invalid_setting_stops_with_a_one_line_error(tmp_path, args, env, setting):
    result = run(*args, "--data-dir", str(tmp_path / "d"), env=env)
    assert result.exit_code != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: invalid setting")
    assert setting in line
    assert result.stdout == ""


def test_a_misspelt_setting_in_the_environment_is_warned_about_not_dropped_silently(data_dir):
    typo = {"LNPLUGIN_PUBLC_URL": "https://p.example"}
    result = run("token", "create", "--scope", "admin", "--data-dir", data_dir, env=typo)
    assert result.exit_code == 0
    assert result.stderr.splitlines()[0] == (
        "Warning: LNPLUGIN_PUBLC_URL is not a setting lnplugin reads (ignored); "
        "did you mean LNPLUGIN_PUBLIC_URL?"
    )
    assert result.stderr.count("LNPLUGIN_PUBLC_URL") == 1


# -- exit status -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("token", "create", "--scope", "invoices:write"),
        ("token", "create", "--scope", "admin", "--rate-limit", "0/second"),
        ("nwc", "connect", "--scope", "invoices:write", "--nwc-relay", "ws://127.0.0.1:1"),
        ("nwc", "connect", "--scope", "invoices:read"),  # no relay set
        ("address", "add", "Not A Name!"),
        ("address", "add", "alice", "--comment-allowed", "-1"),
        ("address", "add", "alice", "--webhook", "http://127.0.0.1:1/hook"),
    ],
    ids=["scope", "rate-limit", "nwc-scope", "nwc-relay", "username", "comment", "webhook"],
)
def test_a_bad_flag_value_or_missing_setting_exits_2_like_any_bad_setting(data_dir, args):
    """Exit status 2 is a command not run as given (a usage error, a bad flag
    value, a bad or missing setting); 1 is one that ran and failed. These
    bad values exited 1, where `--port abc` or `--since "last week"` exit 2."""
    result = run(*args, "--data-dir", data_dir)
    assert result.exit_code == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: ")
    assert result.stdout == ""


def test_a_command_that_ran_and_failed_exits_1(data_dir):
    run("token", "create", "--scope", "admin", "--data-dir", data_dir)
    for args in (
        ("token", "revoke", "99"),
        ("nwc", "revoke", "99"),
        ("address", "show", "nobody"),
        ("decode", "lnbc1notaninvoice"),
    ):
        result = run(*args, "--data-dir", data_dir) if args[0] != "decode" else run(*args)
        assert result.exit_code == 1, (args, result.stderr)
        assert result.stderr.startswith("Error: ")


# -- labels ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "why"),
    [
        ("shop\tfront", "no tabs, line breaks or other control characters"),
        ("shop\nfront", "no tabs, line breaks or other control characters"),
        ("x" * 201, "at most 200 characters"),
    ],
    ids=["tab", "line break", "201 characters"],
)
def test_a_label_that_would_break_the_list_lines_is_refused(data_dir, label, why):
    """`token list` and `nwc list` print one tab-separated line per row: a tab
    or line break in a label broke them, and the CLI took any length where
    `POST /nwc/connections` takes 200 characters."""
    for args in (
        ("token", "create", "--scope", "admin"),
        ("nwc", "connect", "--scope", "invoices:read", "--nwc-relay", "ws://127.0.0.1:1"),
    ):
        result = run(*args, "--label", label, "--data-dir", data_dir)
        assert result.exit_code == 2, result.stderr
        assert "--label" in result.stderr and why in result.stderr
        assert result.stdout == ""
    assert run("token", "list", "--data-dir", data_dir).stdout == ""
    listed = run(
        "token", "create", "--scope", "admin", "--label", "é" * 200, "--data-dir", data_dir
    )
    assert listed.exit_code == 0
    assert run("token", "list", "--data-dir", data_dir).stdout.count("\n") == 1
