"""The `lnplugin` command line.

Every command that touches the data dir takes `--config` and `--data-dir`;
settings resolve as described in `lnplugin.config` (flags > environment >
TOML file > defaults). An invalid setting stops the command with a one-line
error naming it.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from lnplugin import __version__
from lnplugin.config import ConfigError, Settings, env_typos, load_settings

if TYPE_CHECKING:
    from pathlib import Path

    from lnplugin.nodes.base import DevPayments

F = Callable[..., Any]
T = TypeVar("T")


class Whole(click.IntRange):
    """click's IntRange, named so that `abc` gets "'abc' is not a valid integer."
    (click's own name, "integer range", reads as if a range were asked for)."""

    name = "integer"


# Bounded so a mistyped number is a usage error, not an overflow in SQLite:
# row ids are SQLite's signed 64-bit integers, amounts at most 21M BTC.
ROW_ID = Whole(min=1, max=2**63 - 1)


def examples(*lines: str) -> str:
    """A command's `--help` epilog of example lines, printed as written (click's
    `\\b`); tests/test_docs.py parses each one against the CLI."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


class Label(click.ParamType):
    """A token's or connection's label (`lnplugin.labels`): a usage error, exit 2."""

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from lnplugin.labels import label_problem

        problem = label_problem(str(value))
        if problem is not None:
            self.fail(problem, param, ctx)
        return str(value)


LABEL = Label()
MSAT = Whole(min=1, max=21_000_000 * 100_000_000 * 1000)

_COMMON = [
    click.option(
        "--config",
        type=click.Path(dir_okay=False),
        help="TOML settings file. [env: LNPLUGIN_CONFIG]",
    ),
    click.option(
        "--data-dir",
        type=click.Path(file_okay=False),
        help="Data directory (SQLite store, node key). [default: ~/.lnplugin] "
        "[env: LNPLUGIN_DATA_DIR]",
    ),
]
_NETWORK = click.option(
    "--network",
    help="bitcoin, testnet, testnet4, signet or regtest. [default: regtest on the dev node, "
    "else bitcoin] [env: LNPLUGIN_NETWORK]",
)
_SERVER = [
    click.option("--host", help="Address to listen on. [default: 127.0.0.1] [env: LNPLUGIN_HOST]"),
    click.option(
        "--port", type=int, help="Port to listen on. [default: 8080] [env: LNPLUGIN_PORT]"
    ),
    click.option(
        "--node",
        help="Node to use: dev, lnd or cln. [default: dev] [env: LNPLUGIN_NODE]",
    ),
    click.option(
        "--reuse-dev-data-dir/--no-reuse-dev-data-dir",
        default=None,
        help="Serve with lnd or cln a data dir the embedded dev node served last, its "
        "simulated invoices and payments kept beside the real node's (refused otherwise). "
        "[default: off] [env: LNPLUGIN_REUSE_DEV_DATA_DIR]",
    ),
    click.option(
        "--reuse-node-data-dir/--no-reuse-node-data-dir",
        default=None,
        help="Serve with the embedded dev node a data dir lnd or cln served last, its "
        "simulated invoices and payments added beside the real node's (refused otherwise). "
        "[default: off] [env: LNPLUGIN_REUSE_NODE_DATA_DIR]",
    ),
    _NETWORK,
    click.option(
        "--threads",
        type=int,
        help="HTTP worker threads. [default: 16] [env: LNPLUGIN_THREADS]",
    ),
    click.option(
        "--log-level",
        help="debug, info, warning or error. [default: info] [env: LNPLUGIN_LOG_LEVEL]",
    ),
    click.option(
        "--log-format",
        help="text or json (one JSON object per line). [default: text] [env: LNPLUGIN_LOG_FORMAT]",
    ),
    click.option(
        "--access-log/--no-access-log",
        default=None,
        help="Log one line per HTTP request at info level (method, route, status, duration, "
        "token id). [default: on] [env: LNPLUGIN_ACCESS_LOG]",
    ),
    click.option(
        "--bootstrap-token/--no-bootstrap-token",
        default=None,
        help="When no admin token exists, make one and print it once on standard output. "
        "[default: on, off under systemd, whose standard output is the journal] "
        "[env: LNPLUGIN_BOOTSTRAP_TOKEN]",
    ),
    click.option(
        "--cors-origin",
        multiple=True,
        help="Browser origin (https://app.example) allowed to call the API; repeatable. "
        "[default: none] [env: LNPLUGIN_CORS_ORIGIN, comma-separated]",
    ),
    click.option(
        "--public-url",
        help="The URL payers reach this server at (e.g. https://pay.example.com); printed at "
        "startup and used for Lightning Addresses and LNURL links, which stay off without it. "
        "[env: LNPLUGIN_PUBLIC_URL]",
    ),
    click.option(
        "--trust-proxy",
        type=int,
        help="Number of reverse proxies in front whose X-Forwarded-For/-Proto headers are "
        "trusted for the client address. [default: 0] [env: LNPLUGIN_TRUST_PROXY]",
    ),
    click.option(
        "--rate-limit",
        help="Requests per client address to the public LNURL routes, e.g. 60/minute or "
        "10/second;300/hour. [default: 60/minute] [env: LNPLUGIN_RATE_LIMIT]",
    ),
    click.option(
        "--rate-limit-callback",
        help="Requests per client address to the LNURL-pay callback, which mints an invoice. "
        "[default: 20/minute] [env: LNPLUGIN_RATE_LIMIT_CALLBACK]",
    ),
    click.option(
        "--token-rate-limit",
        help="Requests per API token for tokens without their own limit (token create "
        "--rate-limit). [default: 100/minute] [env: LNPLUGIN_TOKEN_RATE_LIMIT]",
    ),
    click.option(
        "--fiat-provider",
        multiple=True,
        help="Exchange-rate source for fiat-priced invoices: coinbase, coingecko, bitstamp, "
        "kraken, mempool, blockchain, or NAME=URL|JSON.PATH ({currency} in either stands for "
        "the code); repeatable, the median is used. [default: none, fiat off] "
        "[env: LNPLUGIN_FIAT_PROVIDER, space-separated]",
    ),
    click.option(
        "--fiat-allow",
        multiple=True,
        help="CIDR that rate providers may be reached at although private or loopback; "
        "repeatable. [env: LNPLUGIN_FIAT_ALLOW, comma-separated]",
    ),
    click.option(
        "--fiat-cache-ttl",
        type=float,
        help="Seconds a fetched rate is used before the providers are asked again. "
        "[default: 60] [env: LNPLUGIN_FIAT_CACHE_TTL]",
    ),
    click.option(
        "--fiat-max-age",
        type=float,
        help="Seconds after which, with no provider answering, fiat-priced invoices are "
        "refused (503). [default: 600] [env: LNPLUGIN_FIAT_MAX_AGE]",
    ),
    click.option(
        "--fiat-expiry",
        type=int,
        help="Default expiry in seconds of fiat-priced invoices (the rate moves). "
        "[default: 600] [env: LNPLUGIN_FIAT_EXPIRY]",
    ),
    click.option(
        "--display-currency",
        help="ISO 4217 code every invoice gets fiat_currency/fiat_in_cents in, at the rate "
        "when it is created. [default: none] [env: LNPLUGIN_DISPLAY_CURRENCY]",
    ),
    click.option(
        "--signature-window",
        type=int,
        help="Seconds a signed request's timestamp may be off from the server's clock. "
        "[default: 300] [env: LNPLUGIN_SIGNATURE_WINDOW]",
    ),
    click.option(
        "--lnd-host", help="LND gRPC HOST:PORT. [default: localhost:10009] [env: LNPLUGIN_LND_HOST]"
    ),
    click.option("--lnd-cert", help="LND tls.cert path. [env: LNPLUGIN_LND_CERT]"),
    click.option(
        "--lnd-macaroon", help="LND macaroon file path or hex. [env: LNPLUGIN_LND_MACAROON]"
    ),
    click.option(
        "--cln-socket", help="Core Lightning lightning-rpc socket. [env: LNPLUGIN_CLN_SOCKET]"
    ),
    click.option(
        "--webhook-allow",
        multiple=True,
        help="CIDR that webhooks may target although private or loopback; repeatable. "
        "[env: LNPLUGIN_WEBHOOK_ALLOW, comma-separated]",
    ),
    click.option(
        "--webhook-retry-schedule",
        help="Seconds between webhook attempts, comma-separated. "
        "[default: 5,300,1800,7200,18000,36000,36000] [env: LNPLUGIN_WEBHOOK_RETRY_SCHEDULE]",
    ),
    click.option(
        "--rss-payment-domain",
        multiple=True,
        help="Domain whose rss::payment boost records are fetched (subdomains too); "
        "repeatable. [default: none, so no fetches] "
        "[env: LNPLUGIN_RSS_PAYMENT_DOMAIN, comma-separated]",
    ),
    click.option(
        "--rss-payment-retry-schedule",
        help="Seconds between rss::payment fetch attempts, comma-separated. "
        "[default: 10,60,300,1800,7200,21600] [env: LNPLUGIN_RSS_PAYMENT_RETRY_SCHEDULE]",
    ),
    click.option(
        "--rss-payment-timeout",
        type=float,
        help="Seconds an rss::payment fetch may wait for the answer. [default: 10] "
        "[env: LNPLUGIN_RSS_PAYMENT_TIMEOUT]",
    ),
    click.option(
        "--rss-payment-max-bytes",
        type=int,
        help="Largest x-rss-payment header accepted, in bytes. [default: 16384] "
        "[env: LNPLUGIN_RSS_PAYMENT_MAX_BYTES]",
    ),
    click.option(
        "--nwc-relay",
        multiple=True,
        help="Nostr relay (wss://...) that Nostr Wallet Connect listens and answers on; "
        "repeatable. NWC is off without one. [env: LNPLUGIN_NWC_RELAY, comma-separated]",
    ),
    click.option(
        "--nwc-rate-limit",
        help="Requests per Nostr Wallet Connect connection: a burst of COUNT, refilled "
        "evenly over PERIOD; past it, RATE_LIMITED. [default: 30 per 30 seconds] "
        "[env: LNPLUGIN_NWC_RATE_LIMIT]",
    ),
    click.option(
        "--zaps/--no-zaps",
        default=None,
        help="NIP-57 zaps: Lightning Addresses advertise allowsNostr and a zapper key, take "
        "zap requests and publish zap receipts to the payer's relays. [default: off] "
        "[env: LNPLUGIN_ZAPS]",
    ),
    click.option(
        "--zap-relay-allow",
        multiple=True,
        help="CIDR that zap receipts may be published to although private or loopback "
        "(for tests); repeatable. [env: LNPLUGIN_ZAP_RELAY_ALLOW, comma-separated]",
    ),
    click.option(
        "--max-streams",
        type=int,
        help="Server-Sent Event streams served at once; each costs a few KB on the event "
        "loop, no thread, and more get 503. [default: 512] [env: LNPLUGIN_MAX_STREAMS]",
    ),
    click.option(
        "--sse-heartbeat",
        type=float,
        help="Seconds between heartbeats on idle event streams. [default: 15] "
        "[env: LNPLUGIN_SSE_HEARTBEAT]",
    ),
    click.option(
        "--client-timeout",
        type=float,
        help="Seconds a client has to send its request whole, and an answer it stopped "
        "reading may wait unsent, before its connection is closed. [default: 20] "
        "[env: LNPLUGIN_CLIENT_TIMEOUT]",
    ),
    click.option(
        "--busy-timeout",
        type=float,
        help="Seconds a store write waits for the write lock (another process's, or "
        "another write of this server's) before "
        "answering 503. [default: 10] [env: LNPLUGIN_BUSY_TIMEOUT]",
    ),
    click.option(
        "--hold-cancel-margin",
        type=int,
        help="Blocks before a held invoice's settle deadline at which lnplugin cancels it "
        "itself, so no channel is force-closed over it. [default: 24] "
        "[env: LNPLUGIN_HOLD_CANCEL_MARGIN]",
    ),
]


def _apply(options: list[Any], fn: F) -> F:
    for option in reversed(options):
        fn = option(fn)
    return fn


def common_options(fn: F) -> F:
    return _apply(_COMMON, fn)


def server_options(fn: F) -> F:
    return _apply(_COMMON + _SERVER, fn)


# `status` takes serve's options, so serve's command line works there too;
# but its --host/--port say where to ask, not where to listen.
_ASKED = [
    click.option(
        "--host",
        help="Address of the server to ask when the data dir does not say where its "
        "server listens. [default: 127.0.0.1] [env: LNPLUGIN_HOST]",
    ),
    click.option(
        "--port",
        type=int,
        help="Port of the server to ask when the data dir does not say where its "
        "server listens; asked only if that server's process listens there. "
        "[default: 8080] [env: LNPLUGIN_PORT]",
    ),
]


def status_options(fn: F) -> F:
    return _apply(_COMMON + _ASKED + _SERVER[2:], fn)


class Unusable(click.ClickException):
    """A setting, flag value, data dir, store or node credential that cannot
    work: one line (`Error: ...`) and exit status 2, as click's usage errors,
    never a traceback. Status 1 (`click.ClickException`) is for a command that
    ran as given and failed: nothing by that id, a name taken, a node's refusal."""

    exit_code = 2


def _unusable_errors() -> tuple[type[BaseException], ...]:
    """`service.unusable_errors`, imported only once something failed: a
    command that needs no service starts without its imports."""
    from lnplugin.service import unusable_errors

    return unusable_errors()


class _Group(click.Group):
    """Turns the errors every command can meet while opening the data dir, the
    store or the node into `Unusable`, in one place rather than per command."""

    def invoke(self, ctx: click.Context) -> Any:
        import sqlite3

        try:
            return super().invoke(ctx)
        except click.MissingParameter:
            raise  # click's usage lines show what is missing
        except click.BadParameter as exc:
            # A bad flag value is a bad setting: one line naming it, as the
            # same value from the environment or the config file gets.
            raise Unusable(exc.format_message()) from None
        except _unusable_errors() as exc:
            raise Unusable(str(exc)) from None
        except sqlite3.Error as exc:  # a damaged page met mid-command, not at open
            from lnplugin.store.db import read_error

            raise Unusable(str(read_error(exc))) from None


def settings_from(flags: dict[str, Any], *, warn: bool = True) -> Settings:
    """The settings, or one line naming the bad one; misspelt `LNPLUGIN_*`
    variables are warned about on stderr (`serve` logs them instead, with
    its other log lines, so `warn` is False there). A data dir this user
    cannot look inside, or root in another user's, is refused here, once
    for every command."""
    from lnplugin.datadir import DataDirError, check_not_root_in_anothers, check_reachable

    try:
        settings = load_settings(flags)
        check_reachable(settings.data_dir)
        check_not_root_in_anothers(settings.data_dir)
    except (ConfigError, DataDirError) as exc:
        raise Unusable(str(exc)) from None
    if warn:
        for line in env_typos():
            click.echo(f"Warning: {line}", err=True)
    return settings


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lnplugin")
def cli() -> None:
    """lnplugin: an Alby-compatible invoice service beside your Lightning node.

    Start with `lnplugin serve`: with no node configured it runs on an
    embedded dev node, prints its URL and an admin token.

    Exit status: 0 done; 1 the command ran and failed (nothing by that id, a
    name taken, an invalid invoice to decode, a failed doctor check); 2 it
    was not run as given (a usage error, a bad flag value, a setting that is
    invalid, missing or cannot work, a data dir with no store), one line
    naming it.
    """


@cli.command(
    epilog=examples(
        "lnplugin serve",
        "lnplugin serve --port 8081 --data-dir ./data",
        "lnplugin serve --public-url https://pay.example.com --nwc-relay wss://relay.example.com",
        "lnplugin serve --node lnd --lnd-cert ~/.lnd/tls.cert --lnd-macaroon ~/lnplugin.macaroon",
        "lnplugin serve --node cln --cln-socket ~/.lightning/bitcoin/lightning-rpc",
        "lnplugin serve --config /etc/lnplugin/lnplugin.toml",
    )
)
@server_options
def serve(**flags: Any) -> None:
    """Run the HTTP API and follow the node's settlements."""
    from lnplugin.run.server import serve as run

    settings = settings_from(flags, warn=False)  # logged by `run`
    code = run(settings)
    sys.exit(code)


@cli.command(
    epilog=examples(
        "lnplugin status",
        "lnplugin status --data-dir /var/lib/lnplugin",
    )
)
@status_options
def status(**flags: Any) -> None:
    """Show the follower's state: connection, cursor, lag.

    Asks the server that serves the data dir (GET /health, at the address it
    noted in the data dir; when it noted none, at --host/--port, and only if
    that server's own process listens there); when none serves it, or it
    cannot be reached, reports what the store holds. It takes serve's
    options, so serve's command line works here too, but only --data-dir,
    --config, --host and --port matter (--port: where to ask).
    """
    import requests

    from lnplugin.api.info import STATUS_KEY_HEADER
    from lnplugin.config import http_url
    from lnplugin.datadir import lock_holder
    from lnplugin.service import listening_server, serving

    settings = settings_from(flags)
    served = serving(settings.data_dir)
    holder = lock_holder(settings.data_dir)
    url: str | None = None
    if served is not None:
        url = f"{served.url}/health"
    elif holder is not None:
        # It noted no URL (an older lnplugin): asked at --host/--port only if
        # its own process listens there; whatever else answers there belongs
        # to another data dir, or is no lnplugin at all.
        address = listening_server(settings.data_dir, settings.host, settings.port)
        url = f"{http_url(address, settings.port)}/health" if address else None
    # The key shows the operator's /health (the follower's position, NWC).
    headers = {STATUS_KEY_HEADER: served.status_key} if served and served.status_key else {}
    if url is not None:
        try:
            reply = requests.get(url, headers=headers, timeout=3).json()
            click.echo(json.dumps({"server": "running", "url": url, **reply}, indent=2))
            return
        except (requests.RequestException, ValueError):
            pass
    unreached: dict[str, str] = {}
    if holder is not None:  # a live process serves it, and did not answer as it
        where = url or f"{settings.listen_url}/health"
        unreached = {
            "server": "not reached",
            "reason": f"a server (pid {holder}) serves {settings.data_dir}, but "
            + (
                f"did not answer at {where}"
                if url
                else f"noted no address in its lock file, and what listens at {where} "
                "cannot be told to be it"
            )
            + "; what follows is what the store holds",
        }
    _report_store(settings, unreached)


def _report_store(settings: Settings, unreached: dict[str, str]) -> None:
    """`status` without an answer from the server: what the store holds."""
    from lnplugin.store import Store, cursors, invoices

    if not settings.data_dir.exists():  # a mistyped --data-dir, most likely
        raise Unusable(
            f"no data dir at {settings.data_dir}: no lnplugin store there and no server "
            "serves it; check --data-dir (LNPLUGIN_DATA_DIR)"
        )
    if not settings.db_path.is_file():  # opening a Store would create one
        raise Unusable(
            f"no lnplugin store at {settings.db_path} and no server serves "
            f"{settings.data_dir}; check --data-dir (LNPLUGIN_DATA_DIR)"
        )
    store = Store(settings.db_path, busy_timeout=settings.busy_timeout)
    with store.snapshot() as conn:
        saved = cursors.all_cursors(conn)
        counts = invoices.count_by_state(conn)
    store.close()
    # No `url`: nothing was asked there (or what answered serves another
    # data dir). States as the API names them (an unpaid invoice is CREATED).
    shown = {("CREATED" if state == "OPEN" else state): n for state, n in counts.items()}
    click.echo(
        json.dumps(
            {
                "server": "not running",
                **unreached,
                "store": str(settings.db_path),
                "follower": {"cursor": saved.get(cursors.INCOMING, 0)},
                "cursors": saved,
                "invoices": shown,
            },
            indent=2,
        )
    )


@cli.command(
    epilog=examples(
        "lnplugin decode lnbcrt210n1...",
        "lnplugin decode lightning:lnbc1...",
    )
)
@click.argument("invoice")
def decode(invoice: str) -> None:
    """Decode a BOLT11 invoice and print Alby's decode JSON."""
    from lnplugin import bolt11
    from lnplugin.alby import decoded_json

    try:
        decoded = bolt11.decode(invoice.strip())
    except bolt11.Bolt11Error as exc:
        raise click.ClickException(f"invalid invoice: {exc.reason}") from None
    click.echo(json.dumps(decoded_json(decoded, None, int(time.time())), indent=2))


@cli.command(
    short_help="Check the node connection and configuration.",
    epilog=examples(
        "lnplugin doctor",
        "lnplugin doctor --node lnd --lnd-cert ~/.lnd/tls.cert --lnd-macaroon ~/lnplugin.macaroon",
        "lnplugin doctor --node cln --cln-socket ~/.lightning/bitcoin/lightning-rpc",
    ),
)
@server_options
def doctor(**flags: Any) -> None:
    """Check the node connection and configuration, one line per check.

    Exits 1 when a check fails; warnings (e.g. even TLV types Core Lightning
    strips) exit 0. It takes serve's options, so serve's command line works
    here too; what it checks is the node's settings and the data dir (not
    --host or --port).
    """
    from lnplugin.doctor import exit_code, run

    checks = run(settings_from(flags))
    for check in checks:
        click.echo(check.line())
    sys.exit(exit_code(checks))


@cli.command(
    short_help="Export invoices as CSV or JSON Lines.",
    epilog=examples(
        "lnplugin export --output invoices.csv",
        "lnplugin export --format jsonl --type incoming --since 2026-01-01 --output boosts.jsonl",
        "lnplugin export --spreadsheet-safe > invoices.csv",
    ),
)
@common_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    default="csv",
    show_default=True,
    help="CSV (one column per boostagram field) or JSON Lines (same keys, typed values).",
)
@click.option(
    "--since",
    help="Only invoices created at or after this: unix seconds or ISO 8601 "
    "(2026-01-31, 2026-01-31T12:00:00Z).",
)
@click.option(
    "--type",
    "type_",
    type=click.Choice(["incoming", "outgoing"]),
    help="Only this direction. [default: both]",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    help="File to write (created 0600). [default: stdout]",
)
@click.option(
    "--spreadsheet-safe",
    is_flag=True,
    help="CSV only: prefix cells that start with = + - @ with ' so a spreadsheet "
    "shows them as text instead of running them as formulas.",
)
def export(
    fmt: str,
    since: str | None,
    type_: str | None,
    output: str,
    spreadsheet_safe: bool,
    **flags: Any,
) -> None:
    """Export invoices (with boostagram fields) as CSV or JSON Lines.

    Reads the store directly, so it works whether or not the server runs.
    The same export is served at GET /invoices/export.
    """
    from pathlib import Path

    from lnplugin.datadir import owned_file
    from lnplugin.export import Format, SinceError, parse_since, stream

    try:
        since_ts = parse_since(since) if since is not None else None
    except SinceError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    kind: Format = "jsonl" if fmt == "jsonl" else "csv"
    if spreadsheet_safe and kind != "csv":
        raise click.BadParameter("is for CSV only (--format csv)", param_hint="--spreadsheet-safe")
    settings = settings_from(flags)
    _require_store(settings)
    if output != "-" and owned_file(settings.data_dir, Path(output)):
        # O_TRUNC on the store (or its -wal) would wipe it while it is read.
        raise Unusable(f"cannot write --output {output}: it is one of the data dir's own files")
    store = _store(flags)
    safe = spreadsheet_safe
    chunks = stream(store.conn, kind, type_=type_, since=since_ts, spreadsheet_safe=safe)
    try:
        if output == "-":
            for chunk in chunks:
                sys.stdout.write(chunk)
            sys.stdout.flush()
            return
        try:
            _write_private(Path(output), chunks)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise Unusable(f"cannot write --output {output} ({reason})") from None
    finally:
        store.close()


def _write_private(target: Path, chunks: Iterable[str]) -> None:
    """Write `chunks` to `target`, created 0600: payer names, emails and
    messages are as private as the store.

    A file (or a link to one) is written in whole (`written_in_whole`), so
    a full disk or a kill leaves the old file or none, never a truncated
    export under the name asked for. A FIFO or a device (/dev/stdout) is
    written directly."""
    from lnplugin.datadir import written_in_whole

    if target.exists() and not target.is_file():
        _write_text(target, chunks)
        return
    with written_in_whole(target.resolve()) as partial:
        _write_text(partial, chunks)


def _write_text(path: Path, chunks: Iterable[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as out:
        for chunk in chunks:
            out.write(chunk)


def _require_store(settings: Settings) -> None:
    """Refuse, rather than create an empty store, when the data dir has none
    (a mistyped --data-dir would otherwise export nothing, successfully)."""
    if not settings.db_path.is_file():
        raise Unusable(
            f"no lnplugin store at {settings.db_path}; check --data-dir (LNPLUGIN_DATA_DIR)"
        )


@cli.command(
    short_help="Copy the store to FILE while the server runs.",
    epilog=examples(
        "lnplugin backup /var/backups/lnplugin/lnplugin.sqlite",
        "lnplugin backup --force --data-dir /var/lib/lnplugin /var/backups/lnplugin/nightly.sqlite",
    ),
)
@common_options
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
def backup(file: str, force: bool, **flags: Any) -> None:
    """Copy the store to FILE, consistently, while the server keeps running.

    Uses SQLite's online backup API, so the copy holds every invoice
    acknowledged before it started and nothing half-written, and the keysend
    records the Core Lightning plugin still holds in htlc-records.jsonl.
    FILE is created 0600 (it holds preimages and webhook secrets). Restore:
    see docs/operations.md.
    """
    from pathlib import Path

    from lnplugin.datadir import private_database
    from lnplugin.store.backup import BackupError
    from lnplugin.store.backup import backup as run

    if not file.strip():
        raise click.BadParameter("must name a file", param_hint="FILE")
    settings = settings_from(flags)
    # What opening it would do for any other command: a store copied in
    # loose (0644) is tightened, with its -wal and -shm. A read-only store
    # is backed up all the same.
    with contextlib.suppress(OSError):
        if settings.db_path.is_file():
            private_database(settings.db_path)
    try:
        done = run(settings.db_path, Path(file), force=force)
    except BackupError as exc:
        raise Unusable(str(exc)) from None
    click.echo(
        f"Backed up {done.invoices} invoices (schema version {done.schema_version}, "
        f"{done.bytes} bytes) to {done.path}"
    )
    if done.queued_records:
        click.echo(
            f"It holds the keysend records of {done.queued_records} payment(s) the CLN "
            "plugin had queued in htlc-records.jsonl, not yet in the store."
        )


# -- tokens ---------------------------------------------------------------------


@cli.group()
def token() -> None:
    """Create, list and revoke API tokens."""


def _store(flags: dict[str, Any], *, existing: bool = False) -> Any:
    """The store, created if the data dir has none (commands that set one up);
    with `existing`, for commands that read or change what is in it, refused
    when the data dir has none, as a mistyped --data-dir would leave one behind."""
    from lnplugin.store import Store

    settings = settings_from(flags)
    if existing:
        _require_store(settings)
    return Store(settings.db_path, busy_timeout=settings.busy_timeout)


def _read(flags: dict[str, Any], read: Callable[[Any], T]) -> T:
    """`read(conn)` on the existing store, closed again before the command
    prints: the whole use the list and show commands make of it."""
    store = _store(flags, existing=True)
    try:
        return read(store.conn)
    finally:
        store.close()


def _change(flags: dict[str, Any], change: Callable[[Any], T]) -> T:
    """`change(tx)` in one transaction on the existing store, closed after:
    the whole use the revoke and remove commands make of it."""
    store = _store(flags, existing=True)
    try:
        with store.transaction() as tx:
            return change(tx)
    finally:
        store.close()


def _state(revoked_at: int | None) -> str:
    """The state column of `token list` and `nwc list`."""
    from lnplugin.alby import iso

    return f"revoked {iso(revoked_at)}" if revoked_at else "active"


@token.command(
    "create",
    epilog=examples(
        "lnplugin token create --scope admin",
        "lnplugin token create --scope invoices:create --scope invoices:read --label shop",
        "lnplugin token create --scope metrics:read --label prometheus --rate-limit 10/second",
        "lnplugin token create --scope invoices:create --require-signature",
    ),
)
@common_options
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="invoices:create, invoices:read, transactions:read, metrics:read or admin; repeatable.",
)
@click.option(
    "--label", type=LABEL, help="A note to recognise the token by (at most 200 characters)."
)
@click.option(
    "--rate-limit",
    "token_rate",
    help="This token's request limit, e.g. 100/minute or 10/second;1000/hour. "
    "[default: the server's --token-rate-limit]",
)
@click.option(
    "--require-signature",
    is_flag=True,
    help="Every request with this token must be signed (docs/signed-requests.md); the "
    "signing secret is printed once, on the line before the token.",
)
def token_create(
    scopes: tuple[str, ...],
    label: str | None,
    token_rate: str | None,
    require_signature: bool,
    **flags: Any,
) -> None:
    """Create a token and print it once, as the last line of output."""
    from lnplugin.api.ratelimit import parse
    from lnplugin.store import tokens

    try:
        tokens.check_scopes(list(scopes))
        if token_rate is not None:
            parse(token_rate)
    except tokens.UnknownScope as exc:
        raise Unusable(f"--scope: {exc}") from None
    except ValueError as exc:
        raise Unusable(f"--rate-limit: {exc}") from None
    store = _store(flags)
    signing = tokens.new_signing_secret() if require_signature else None
    with store.transaction() as tx:
        token_id, secret = tokens.create(tx, list(scopes), label, token_rate, signing)
    store.close()
    click.echo(f"Created token {token_id} with scopes {' '.join(sorted(set(scopes)))}", err=True)
    if signing is not None:
        click.echo(
            "The line before the token is its signing secret; requests must be signed.", err=True
        )
        click.echo(signing)
    click.echo(secret)


@token.command("list")
@common_options
def token_list(**flags: Any) -> None:
    """List tokens (never their secrets)."""
    from lnplugin.alby import iso
    from lnplugin.store import tokens

    for info in _read(flags, tokens.list_all):
        click.echo(
            f"{info.id}\t{' '.join(sorted(info.scopes))}\t{info.label or '-'}\t"
            f"created {iso(info.created_at)}\t{_state(info.revoked_at)}\t"
            f"rate {info.rate_limit or 'default'}" + ("\tsigned" if info.signing_secret else "")
        )


@token.command(
    "revoke",
    epilog=examples(
        "lnplugin token revoke 3   # an id from `lnplugin token list`",
    ),
)
@common_options
@click.argument("token_id", type=ROW_ID)
def token_revoke(token_id: int, **flags: Any) -> None:
    """Revoke a token by its id (see `lnplugin token list`)."""
    from lnplugin.store import tokens

    store = _store(flags, existing=True)
    try:
        done = tokens.revoke(store, token_id)
    except OSError as exc:  # stored, but a running server is not told
        raise click.ClickException(
            f"token {token_id} is revoked in the store, but a running server may accept it "
            f"until it restarts: cannot write {store.revocations.path}: {exc.strerror or exc}"
            if store.revocations is not None
            else str(exc)
        ) from None
    finally:
        store.close()
    if not done:
        raise click.ClickException(f"no active token with id {token_id}")
    click.echo(f"Revoked token {token_id}")


# -- Nostr Wallet Connect ---------------------------------------------------------


@cli.group(short_help="Create, list and revoke Nostr Wallet Connect connections.")
def nwc() -> None:
    """Create, list and revoke Nostr Wallet Connect connections (docs/nwc.md)."""


@nwc.command(
    "connect",
    short_help="Create a connection; its URI is printed once.",
    epilog=examples(
        "lnplugin nwc connect --scope invoices:create --scope invoices:read"
        " --label 'my podcast app' --nwc-relay wss://relay.example.com",
        "lnplugin nwc connect --scope invoices:read --nwc-relay wss://relay.example.com"
        " --lud16 alice --public-url https://pay.example.com",
    ),
)
@common_options
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="invoices:create, invoices:read or transactions:read; repeatable.",
)
@click.option(
    "--label",
    type=LABEL,
    help="A note to recognise the connection by, such as the app's name (at most 200 characters).",
)
@click.option(
    "--nwc-relay",
    multiple=True,
    help="Relay put in the URI; repeatable. [env: LNPLUGIN_NWC_RELAY, comma-separated]",
)
@click.option(
    "--public-url",
    help="The URL payers reach the server at: its host is the domain of the Lightning "
    "Address put in the URI. [env: LNPLUGIN_PUBLIC_URL]",
)
@click.option(
    "--lud16",
    metavar="USERNAME",
    help="The Lightning Address put in the URI (NIP-47 `lud16`), by username or in "
    "full. [default: the only address served, if there is one]",
)
def nwc_connect(
    scopes: tuple[str, ...], label: str | None, lud16: str | None, **flags: Any
) -> None:
    """Create a connection and print its URI once, as the last line of output.

    The URI holds the app's secret key, which lnplugin does not keep: paste it
    into the app now."""
    from lnplugin.nwc.connections import NoAddress, NoRelay, check, connect, lightning_address
    from lnplugin.store.tokens import UnknownScope

    settings = settings_from(flags)
    try:  # before the store is opened: a refusal leaves no new store behind
        check(scopes, settings.nwc_relay)
    except UnknownScope as exc:
        raise Unusable(f"--scope: {exc}") from None
    except NoRelay as exc:
        raise Unusable(str(exc)) from None
    store = _store(flags)
    try:
        address, several = lightning_address(store, settings.public_url, lud16)
        connection_id, uri = connect(store, scopes, label, settings.nwc_relay, address)
    except NoAddress as exc:
        raise Unusable(f"--lud16: {exc}") from None
    except (UnknownScope, NoRelay) as exc:  # `check` above has refused these already
        raise Unusable(str(exc)) from None
    finally:
        store.close()
    click.echo(
        f"Created wallet connection {connection_id} with scopes {' '.join(sorted(set(scopes)))}",
        err=True,
    )
    if several:
        click.echo(
            "Note: the URI names no Lightning Address (NIP-47 lud16): several are served; "
            "give --lud16 USERNAME to put one in",
            err=True,
        )
    click.echo(uri)


@nwc.command("list")
@common_options
def nwc_list(**flags: Any) -> None:
    """List connections (their app public keys, never a secret).

    One tab-separated line each: id, scopes, label, app public key, created,
    state, the Lightning Address its URI names (`-` for none)."""
    from lnplugin.alby import iso
    from lnplugin.store import nwc as db

    for c in _read(flags, db.list_all):
        click.echo(
            f"{c.id}\t{' '.join(sorted(c.scopes))}\t{c.label or '-'}\t{c.app_pubkey}\t"
            f"created {iso(c.created_at)}\t{_state(c.revoked_at)}\t{c.lud16 or '-'}"
        )


@nwc.command(
    "revoke",
    short_help="Revoke a connection; its app gets UNAUTHORIZED.",
    epilog=examples(
        "lnplugin nwc revoke 2   # an id from `lnplugin nwc list`",
    ),
)
@common_options
@click.argument("connection_id", type=ROW_ID)
def nwc_revoke(connection_id: int, **flags: Any) -> None:
    """Revoke one connection by its id; its app gets UNAUTHORIZED from then on."""
    from lnplugin.store import nwc as db

    done = _change(flags, lambda tx: db.revoke(tx, connection_id))
    if not done:
        raise click.ClickException(f"no active wallet connection with id {connection_id}")
    click.echo(f"Revoked wallet connection {connection_id}")


# -- webhooks --------------------------------------------------------------------


@cli.command(
    "webhook-secret",
    short_help="Print the secret that signs per-invoice webhooks.",
    epilog=examples(
        "lnplugin webhook-secret",
        "lnplugin webhook-secret --rotate",
    ),
)
@common_options
@click.option(
    "--rotate",
    is_flag=True,
    help="Make a new secret; the previous one keeps signing alongside it for 24 hours.",
)
def webhook_secret(rotate: bool, **flags: Any) -> None:
    """Print the secret that signs per-invoice `webhook` URL deliveries.

    Endpoints made with POST /webhook_endpoints have secrets of their own.
    The secret is the last line of output.
    """
    from lnplugin.store import webhooks

    store = _store(flags)
    with store.transaction() as tx:
        secret = webhooks.rotate_service_secret(tx) if rotate else webhooks.service_secrets(tx)[0]
    store.close()
    if rotate:
        click.echo("Rotated; the previous secret stays valid for 24 hours", err=True)
    click.echo(secret)


# -- dev node --------------------------------------------------------------------


@cli.group()
def dev() -> None:
    """Simulate payments on the embedded dev node."""


def _dev_node(flags: dict[str, Any]) -> DevPayments:
    """The dev node of the data dir; refused when the data dir has no store (a
    payment on a dev node no server follows would print SETTLED and reach
    nothing: a forgotten `--data-dir`), or another node kind serves it."""
    from lnplugin.nodes.dev import DevNode
    from lnplugin.service import served_kind

    settings = settings_from(flags)
    _require_store(settings)
    kind = served_kind(settings.data_dir)
    if kind not in (None, "", "dev"):
        raise Unusable(
            f"{settings.data_dir} is served by a {kind} node, not the embedded dev node: "
            "a simulated payment there would change nothing; pay from a real node instead"
        )
    return DevNode(settings.data_dir, settings.effective_network)


def _echo_paid(paid: Any) -> None:
    click.echo(
        json.dumps(
            {
                "payment_hash": paid.payment_hash,
                "state": paid.state,
                "amount_received_msat": paid.amount_received_msat,
            }
        )
    )


@dev.command(
    "pay",
    epilog=examples(
        "lnplugin dev pay 8d9a156b...   # by payment hash",
        "lnplugin dev pay lnbcrt210n1...",
        "lnplugin dev pay --amount-msat 10000 lnbcrt1...   # an any-amount invoice",
    ),
)
@common_options
@_NETWORK
@click.argument("target")
@click.option("--amount-msat", type=MSAT, help="Required for amountless invoices.")
def dev_pay(target: str, amount_msat: int | None, **flags: Any) -> None:
    """Pay an open invoice, given its BOLT11 or payment hash.

    A regular invoice is settled; a hold invoice is left ACCEPTED, for its
    settle or cancel (POST /invoices/<payment_hash>/settle or /cancel).
    """
    from lnplugin.nodes.base import NodeError

    node = _dev_node(flags)
    try:
        paid = node.pay(target, amount_msat)
    except NodeError as exc:
        raise click.ClickException(str(exc)) from None
    _echo_paid(paid)


@dev.command(
    "mine",
    short_help="Move the dev node's simulated chain on.",
    epilog=examples(
        "lnplugin dev mine --blocks 10",
    ),
)
@common_options
@_NETWORK
@click.option(
    "--blocks",
    type=Whole(min=1, max=10_000),
    default=1,
    show_default=True,
    help="How many blocks to mine.",
)
def dev_mine(blocks: int, **flags: Any) -> None:
    """Move the dev node's simulated chain on (toward held invoices' deadlines)."""
    from lnplugin.nodes.dev import DevNode

    node = _dev_node(flags)
    assert isinstance(node, DevNode)
    click.echo(json.dumps({"block_height": node.mine(blocks)}))


@dev.command(
    "keysend",
    short_help="Receive a keysend payment with custom TLV records.",
    epilog=examples(
        "lnplugin dev keysend --amount-msat 5000 --record 34349334=hello",
        "lnplugin dev keysend --amount-msat 5000 --record 696969=hex:616c696365"
        ' --record \'7629169={"podcast":"My Pod","message":"great show"}\'',
    ),
)
@common_options
@_NETWORK
@click.option("--amount-msat", type=MSAT, required=True, help="The amount received, in msat.")
@click.option(
    "--record",
    "records",
    multiple=True,
    metavar="TYPE=VALUE",
    help="A custom TLV record; VALUE is UTF-8 text or hex:... ; repeatable.",
)
def dev_keysend(amount_msat: int, records: tuple[str, ...], **flags: Any) -> None:
    """Receive a spontaneous keysend payment carrying custom TLV records."""
    from lnplugin.boostagram import parse_record_value

    parsed: dict[int, bytes] = {}
    for item in records:
        kind, sep, value = item.partition("=")
        # At most 20 digits (2^64 has 20) before int() reads it: a TLV type
        # is a BigSize, as POST /dev/keysend checks.
        if (
            not sep
            or not (kind.isascii() and kind.isdigit())
            or len(kind) > 20
            or not 65536 <= int(kind) < 2**64
        ):
            raise click.BadParameter(
                f"{item!r}: expected TYPE=VALUE with a custom TLV type >= 65536 and below 2^64",
                param_hint="--record",
            )
        try:
            parsed[int(kind)] = parse_record_value(value)
        except ValueError as exc:  # bad hex, or text UTF-8 cannot encode
            raise click.BadParameter(f"{item!r}: {exc}", param_hint="--record") from None
    node = _dev_node(flags)
    paid = node.keysend(amount_msat, parsed)
    _echo_paid(paid)


# -- rss::payment ---------------------------------------------------------------------


@cli.group()
def rss() -> None:
    """rss::payment boost records (docs/boostagrams.md)."""


@rss.command(
    "refetch",
    short_help="Fetch the boost records of a newly listed domain.",
    epilog=examples(
        "lnplugin rss refetch --rss-payment-domain fountain.fm",
        "lnplugin rss refetch --rss-payment-domain fountain.fm --failed",
    ),
)
@common_options
@click.option(
    "--rss-payment-domain",
    multiple=True,
    help="Domain whose records are fetched, as `serve` takes it; repeatable. "
    "[env: LNPLUGIN_RSS_PAYMENT_DOMAIN, comma-separated]",
)
@click.option(
    "--failed",
    "include_failed",
    is_flag=True,
    help="Also fetch again the records whose fetch failed (a bad answer, or every retry).",
)
def rss_refetch(include_failed: bool, **flags: Any) -> None:
    """Fetch the boost records of payments that settled while their domain was
    not on --rss-payment-domain, now that it is (a backfill).

    The fetches are made by the server's worker (within a second if it is
    running, else when it starts), through the same guard and retries as any.
    """
    from lnplugin.rss_payment import domain_allowed
    from lnplugin.store import rss_payments

    settings = settings_from(flags)
    domains = settings.rss_payment_domain
    if not domains:
        raise Unusable(
            "no --rss-payment-domain (LNPLUGIN_RSS_PAYMENT_DOMAIN): name the domains to fetch from"
        )
    store = _store(flags, existing=True)
    try:
        rows = rss_payments.not_fetched(store.conn, failed=include_failed)
        allowed = [r["invoice_id"] for r in rows if domain_allowed(r["url"], domains)]
        with store.transaction() as tx:
            queued = rss_payments.requeue(tx, allowed)
    finally:
        store.close()
    left = len(rows) - len(allowed)
    click.echo(
        f"{queued} boost record(s) queued for fetching"
        + (f"; {left} on domains not listed left as they are" if left else "")
    )


# -- Lightning Addresses -----------------------------------------------------------

_PUBLIC_URL = click.option(
    "--public-url",
    help="The URL payers reach the server at, for the printed address and LNURL. "
    "[env: LNPLUGIN_PUBLIC_URL]",
)


@cli.group(short_help="Add, list, show and remove Lightning Addresses.")
def address() -> None:
    """Add, list, show and remove Lightning Addresses (LUD-16, LNURL-pay)."""


def _address_line(row: Any, public_url: str | None) -> str:
    from lnplugin import lnurl

    shown = lnurl.identifier(row.username, public_url) if public_url else row.username
    return (
        f"{shown}\t{row.min_sendable_msat}-{row.max_sendable_msat} msat\t"
        f"comment {row.comment_allowed}\t{row.description}"
    )


@address.command(
    "add",
    epilog=examples(
        "lnplugin address add alice --public-url https://pay.example.com",
        "lnplugin address add alice --description 'Tips for Alice' --comment-allowed 100"
        " --payer-data name --payer-data email:mandatory",
    ),
)
@common_options
@_PUBLIC_URL
@click.argument("username")
@click.option("--min-sendable-msat", type=int, help="Smallest payment. [default: 1000]")
@click.option("--max-sendable-msat", type=int, help="Largest payment. [default: 100000000000]")
@click.option("--description", help="What the payer's wallet shows. [default: Payment to USERNAME]")
@click.option("--comment-allowed", type=int, help="Characters of comment taken. [default: 255]")
@click.option(
    "--payer-data",
    multiple=True,
    metavar="KIND[:mandatory]",
    help="Payer data to ask for: name, email, pubkey, identifier or auth (LUD-04 "
    "signature of a k1 the address issues); repeatable.",
)
@click.option("--webhook", help="URL this address's invoices' events are POSTed to, signed.")
@click.option("--success-message", help="Shown by the wallet once paid; at most 144 characters.")
@click.option("--keysend-custom-key", type=int, help="Keysend TLV type. [default: 696969]")
@click.option("--keysend-custom-value", help="Keysend TLV value. [default: USERNAME]")
def address_add(username: str, payer_data: tuple[str, ...], **options: Any) -> None:
    """Add a Lightning Address; prints it as `lnplugin address show` does."""
    from pydantic import ValidationError

    from lnplugin import ssrf
    from lnplugin.api.errors import field_errors
    from lnplugin.api.schemas import AddressCreate
    from lnplugin.store import addresses

    flags = {k: options.pop(k) for k in ("config", "data_dir", "public_url")}
    settings = settings_from(flags)
    body: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    body["username"] = username
    if payer_data:
        body["payer_data"] = {
            kind.partition(":")[0]: {"mandatory": kind.partition(":")[2] == "mandatory"}
            for kind in payer_data
        }
    try:
        parsed = AddressCreate.model_validate(body)
        errors = parsed.cross_field_errors()
    except ValidationError as exc:
        errors = field_errors(exc)
    webhook = None if errors else parsed.webhook
    if webhook is not None and (reason := ssrf.refusal(webhook, settings.webhook_allow)):
        errors = {"webhook": reason}
    if errors:
        names = {k: "--" + k.split(".")[0].replace("_", "-") for k in errors}
        names["username"] = "USERNAME"
        raise Unusable("; ".join(f"{names[k]}: {v}" for k, v in errors.items()))
    store = _store(flags)
    try:
        with store.transaction() as tx:
            row = addresses.insert(tx, parsed.columns())
    except addresses.DuplicateAddress as exc:
        raise click.ClickException(f"{exc.field} is taken by another address") from None
    finally:
        store.close()
    _show(row, settings.public_url)


@address.command(
    "list",
    epilog=examples(
        "lnplugin address list --public-url https://pay.example.com",
    ),
)
@common_options
@_PUBLIC_URL
def address_list(**flags: Any) -> None:
    """List Lightning Addresses, one a line."""
    from lnplugin.store import addresses

    settings = settings_from(flags)
    for row in _read(flags, addresses.list_all):
        click.echo(_address_line(row, settings.public_url))


def _show(row: Any, public_url: str | None) -> None:
    from lnplugin.api.addresses import address_json

    if not public_url:
        click.echo(
            "Warning: no --public-url (LNPLUGIN_PUBLIC_URL), so there is no address or LNURL "
            "to show yet",
            err=True,
        )
    click.echo(json.dumps(address_json(row, public_url), indent=2))


@address.command(
    "show",
    short_help="Print an address: its Lightning Address and LNURL.",
    epilog=examples(
        "lnplugin address show alice --public-url https://pay.example.com",
    ),
)
@common_options
@_PUBLIC_URL
@click.argument("username")
def address_show(username: str, **flags: Any) -> None:
    """Print an address: its LUD-16 `lightning_address`, bech32 `lnurl` and settings."""
    from lnplugin.store import addresses

    settings = settings_from(flags)
    row = _read(flags, lambda conn: addresses.by_username(conn, username))
    if row is None:
        raise click.ClickException(f"no Lightning Address {username!r}")
    _show(row, settings.public_url)


@address.command(
    "remove",
    epilog=examples(
        "lnplugin address remove alice",
    ),
)
@common_options
@click.argument("username")
def address_remove(username: str, **flags: Any) -> None:
    """Remove an address; invoices minted for it keep its name."""
    from lnplugin.store import addresses

    done = _change(flags, lambda tx: addresses.delete(tx, username))
    if not done:
        raise click.ClickException(f"no Lightning Address {username!r}")
    click.echo(f"Removed {username}")


def main() -> None:
    cli(prog_name="lnplugin")


if __name__ == "__main__":
    main()
