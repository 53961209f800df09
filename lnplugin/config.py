"""Settings: built once from defaults, a TOML file, the environment and flags.

Precedence, lowest to highest: built-in defaults, the TOML file given with
`--config` (or `LNPLUGIN_CONFIG`), `LNPLUGIN_*` environment variables, command
line flags. This is the order click, twelve-factor apps and most daemons use,
so an operator can override one value for one run without editing files.

The resulting `Settings` object is passed explicitly to everything that needs
it; nothing deeper in the code reads the environment.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lnplugin.networks import NETWORKS

if TYPE_CHECKING:
    import limits

ENV_PREFIX = "LNPLUGIN_"
DEFAULT_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
DEFAULT_RSS_RETRY_SCHEDULE = (10, 60, 300, 1800, 7200, 21600)
MAX_RETRY_STEP = 30 * 86400  # seconds: no retry waits longer than this after the last
MAX_RETRY_STEPS = 100
_DOMAIN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+/?")


class ConfigError(Exception):
    """An invalid setting. The message is one line naming the setting."""


NodeKind = Literal["dev", "lnd", "cln"]


class Settings(BaseModel):
    """Validated settings. Field names are the setting names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # validate_default: the default needs `~` expanded like any given value.
    data_dir: Path = Field(Path("~/.lnplugin"), validate_default=True)
    host: str = "127.0.0.1"
    port: int = 8080
    node: NodeKind = "dev"
    # Serve a data dir the embedded dev node served last with lnd or cln all
    # the same (its simulated invoices stay beside the real node's); refused
    # unless asked for (`Service.claim_data_dir`).
    reuse_dev_data_dir: bool = False
    # The other way round: serve with the embedded dev node a data dir lnd or
    # cln served last (its simulated invoices would join the real ones);
    # refused unless asked for (`service.refuse_a_node_data_dir`).
    reuse_node_data_dir: bool = False
    network: str | None = None
    threads: int = 16
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    access_log: bool = True
    # Make and print an admin token when a server starts with none. None is
    # "auto": on, except under systemd (JOURNAL_STREAM set), where standard
    # output is a log and a token printed there would be kept in it.
    bootstrap_token: bool | None = None
    cors_origin: tuple[str, ...] = ()
    public_url: str | None = None
    lnd_host: str = "localhost:10009"
    lnd_cert: Path | None = None
    lnd_macaroon: str | None = None
    cln_socket: Path | None = None
    webhook_allow: tuple[str, ...] = ()
    webhook_retry_schedule: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE
    max_streams: int = 512
    sse_heartbeat: float = 15.0
    client_timeout: float = 20.0
    busy_timeout: float = 10.0
    # Blocks before a held invoice's settle deadline at which lnplugin cancels
    # it itself (see `Follower.cancel_near_deadline`). Above the nodes' own
    # last-moment cancel (LND: 18 blocks), so lnplugin's reason is the one recorded.
    hold_cancel_margin: int = 24
    trust_proxy: int = 0
    rate_limit: str = "60/minute"
    rate_limit_callback: str = "20/minute"
    # rss::payment boost records are fetched only from these domains (and
    # their subdomains); none by default, so the operator opts in.
    rss_payment_domain: tuple[str, ...] = ()
    rss_payment_retry_schedule: tuple[int, ...] = DEFAULT_RSS_RETRY_SCHEDULE
    rss_payment_timeout: float = 10.0
    rss_payment_max_bytes: int = 16384
    # Nostr Wallet Connect relays (docs/nwc.md); NWC is off when empty.
    nwc_relay: tuple[str, ...] = ()
    # Requests per NWC connection: a burst of COUNT, refilled over PERIOD.
    nwc_rate_limit: str = "30 per 30 seconds"
    # NIP-57 zaps on the Lightning Addresses (docs/lnurl.md); off unless asked for.
    zaps: bool = False
    # CIDRs a zap request's relays may be reached at although not public
    # (loopback for tests and trying it by hand); none by default.
    zap_relay_allow: tuple[str, ...] = ()
    # Requests per API token, unless the token has its own (`token create --rate-limit`).
    token_rate_limit: str = "100/minute"
    # Seconds a signed request's timestamp may differ from the server's clock;
    # nonces are remembered for this long.
    signature_window: int = 300
    # Fiat pricing (lnplugin.fiat): rate providers (preset names or NAME=URL|PATH),
    # addresses they may be reached at although not public, cache and age limits.
    fiat_provider: tuple[str, ...] = ()
    fiat_allow: tuple[str, ...] = ()
    fiat_cache_ttl: float = 60.0
    fiat_max_age: float = 600.0
    fiat_expiry: int = 600
    display_currency: str | None = None

    @field_validator("data_dir", "host", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        """An empty value would quietly mean "here" (the current directory, or
        every address); a typo in a script should not get either."""
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("lnd_host")
    @classmethod
    def _lnd_host(cls, value: str) -> str:
        scheme, slashes, rest = value.partition("://")
        if slashes and scheme.isalpha():  # a pasted URL: gRPC takes the address only
            raise ValueError(f"{value!r} is a URL, not HOST:PORT: give {rest.rstrip('/')}")
        host, colon, port = value.rpartition(":")
        if not colon or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not HOST:PORT, such as localhost:10009")
        if any(c.isspace() for c in host):
            raise ValueError(f"{value!r} is not HOST:PORT (the host has a space)")
        return value

    @field_validator("data_dir", "lnd_cert", "cln_socket", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        """Relative to where lnplugin runs (in plugin mode: lightningd's
        directory), so it is shown as an absolute path: a command pasted from
        a log runs elsewhere."""
        return value.absolute()

    @field_validator("port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError("must be between 0 and 65535")
        return value

    @field_validator("threads")
    @classmethod
    def _threads(cls, value: int) -> int:
        if not 1 <= value <= 1024:
            raise ValueError("must be between 1 and 1024")
        return value

    @field_validator("max_streams")
    @classmethod
    def _max_streams(cls, value: int) -> int:
        if not 0 <= value <= 10_000:
            raise ValueError("must be between 0 and 10000")
        return value

    @field_validator("sse_heartbeat")
    @classmethod
    def _heartbeat(cls, value: float) -> float:
        if not 0.05 <= value <= 3600:
            raise ValueError("must be between 0.05 and 3600 seconds")
        return value

    @field_validator("client_timeout")
    @classmethod
    def _client_timeout(cls, value: float) -> float:
        if not 1 <= value <= 3600:
            raise ValueError("must be between 1 and 3600 seconds")
        return value

    @field_validator("busy_timeout")
    @classmethod
    def _busy_timeout(cls, value: float) -> float:
        if not 0.01 <= value <= 600:
            raise ValueError("must be between 0.01 and 600 seconds")
        return value

    @field_validator("hold_cancel_margin")
    @classmethod
    def _hold_cancel_margin(cls, value: int) -> int:
        if not 1 <= value <= 1000:
            raise ValueError("must be between 1 and 1000 blocks")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parsed = urllib.parse.urlsplit(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("must be an http:// or https:// URL, such as https://pay.example.com")
        if parsed.query or parsed.fragment:
            raise ValueError("must not have a query or fragment")
        try:
            port = parsed.port  # urllib checks the port when it is read
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError("has a port that is not a number from 1 to 65535")
        if parsed.username is not None or parsed.password is not None:
            raise ValueError("must not contain user:password@ (payers would see it)")
        if any(c.isspace() for c in value):
            raise ValueError("must not contain spaces")
        return value.rstrip("/")

    @field_validator("trust_proxy")
    @classmethod
    def _trust_proxy(cls, value: int) -> int:
        if not 0 <= value <= 10:
            raise ValueError("must be between 0 and 10 (the number of reverse proxies in front)")
        return value

    @field_validator("fiat_provider", mode="before")
    @classmethod
    def _providers(cls, value: Any) -> tuple[str, ...]:
        """Space-separated in the environment (URLs may hold commas)."""
        from lnplugin.fiat import parse_provider

        items: list[str] = []
        if not isinstance(value, (str, list, tuple)):
            raise ValueError("must be provider names or NAME=URL|JSON.PATH, space-separated")
        for item in value.split() if isinstance(value, str) else value:
            if not isinstance(item, str):
                raise ValueError(f"{item!r} is not a provider name or NAME=URL|JSON.PATH")
            items.extend(item.split())
        for item in items:
            parse_provider(item)  # ValueError names the bad one
        return tuple(items)

    @field_validator("fiat_cache_ttl", "fiat_max_age")
    @classmethod
    def _fiat_seconds(cls, value: float) -> float:
        if not 0 <= value <= 86400:
            raise ValueError("must be between 0 and 86400 seconds")
        return value

    @field_validator("fiat_expiry")
    @classmethod
    def _fiat_expiry(cls, value: int) -> int:
        if not 60 <= value <= 31_536_000:
            raise ValueError("must be between 60 seconds and a year")
        return value

    @field_validator("display_currency")
    @classmethod
    def _display_currency(cls, value: str | None) -> str | None:
        from lnplugin.fiat import MINOR_UNITS

        if value is None:
            return None
        if value.upper() not in MINOR_UNITS:
            raise ValueError("must be an ISO 4217 code lnplugin knows, such as USD or EUR")
        return value.upper()

    @field_validator("signature_window")
    @classmethod
    def _signature_window(cls, value: int) -> int:
        if not 5 <= value <= 3600:
            raise ValueError("must be between 5 and 3600 seconds")
        return value

    @field_validator("rate_limit", "rate_limit_callback", "token_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        rates = read_rates(value)
        if not rates:
            raise ValueError("must be a rate such as 60/minute, or several joined by ;")
        if any(rate.amount < 1 for rate in rates):
            raise ValueError("must allow at least one request (a rate of 0 refuses everything)")
        return value

    @field_validator("nwc_rate_limit")
    @classmethod
    def _one_rate(cls, value: str) -> str:
        rates = read_rates(value)
        if len(rates) != 1:  # one token bucket per connection
            raise ValueError("must be one rate such as 30 per 30 seconds or 60/minute")
        if rates[0].amount < 1:
            raise ValueError("must allow at least one request (a rate of 0 refuses everything)")
        return value

    @field_validator("network")
    @classmethod
    def _network(cls, value: str | None) -> str | None:
        if value is not None and value not in NETWORKS:
            raise ValueError("must be one of " + ", ".join(NETWORKS))
        return value

    @field_validator("webhook_allow", "fiat_allow", "zap_relay_allow", mode="before")
    @classmethod
    def _cidrs(cls, value: Any) -> tuple[str, ...]:
        items = _split(value)
        for item in items:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not a CIDR such as 127.0.0.0/8") from None
        return tuple(items)

    @field_validator("nwc_relay", mode="before")
    @classmethod
    def _relays(cls, value: Any) -> tuple[str, ...]:
        items = _split(value)
        for item in items:
            if not isinstance(item, str) or not re.fullmatch(r"wss?://[^\s/?#]+(/[^\s]*)?", item):
                raise ValueError(f"{item!r} is not a relay URL such as wss://relay.example.com")
        return tuple(items)

    @field_validator("cors_origin", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> tuple[str, ...]:
        """Exact origins only (no `*`, no path): a browser sends the bearer token
        from pages of these origins, so each must be named on purpose."""
        items = _split(value)
        for item in items:
            if not isinstance(item, str) or not _ORIGIN.fullmatch(item):
                raise ValueError(f"{item!r} is not an origin such as https://app.example.com")
        return tuple(item.rstrip("/").lower() for item in items)

    @field_validator("rss_payment_domain", mode="before")
    @classmethod
    def _domains(cls, value: Any) -> tuple[str, ...]:
        items = [str(item).strip().lower().rstrip(".") for item in _split(value)]
        for item in items:
            literal = item.strip("[]")
            try:
                ipaddress.ip_address(literal)
                continue
            except ValueError:
                pass
            if not _DOMAIN.fullmatch(item):
                raise ValueError(
                    f"{item!r} is not a domain such as fountain.fm (no scheme, no path)"
                )
        return tuple(item.strip("[]") for item in items)

    @field_validator("rss_payment_timeout")
    @classmethod
    def _rss_timeout(cls, value: float) -> float:
        if not 0.1 <= value <= 120:
            raise ValueError("must be between 0.1 and 120 seconds")
        return value

    @field_validator("rss_payment_max_bytes")
    @classmethod
    def _rss_max_bytes(cls, value: int) -> int:
        if not 256 <= value <= 65536:
            raise ValueError("must be between 256 and 65536 bytes")
        return value

    @field_validator("webhook_retry_schedule", "rss_payment_retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> tuple[int, ...]:
        items = _split(value)
        try:
            seconds = tuple(int(float(i)) if isinstance(i, str) else int(i) for i in items)
        except (TypeError, ValueError, OverflowError):  # OverflowError: "inf"
            raise ValueError("must be comma-separated seconds, e.g. 5,300,1800") from None
        if not seconds or any(s < 0 for s in seconds):
            raise ValueError("must list at least one non-negative number of seconds")
        if any(s > MAX_RETRY_STEP for s in seconds):
            raise ValueError(f"must have no step over {MAX_RETRY_STEP} seconds (30 days)")
        if len(seconds) > MAX_RETRY_STEPS:
            raise ValueError(f"must have at most {MAX_RETRY_STEPS} steps")
        return seconds

    @property
    def effective_network(self) -> str:
        return self.network or ("regtest" if self.node == "dev" else "bitcoin")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "lnplugin.sqlite"

    @property
    def url(self) -> str:
        return self.public_url or self.listen_url

    @property
    def listen_url(self) -> str:
        """Where this machine reaches the server."""
        return http_url(self.host, self.port)


def http_url(host: str, port: int) -> str:
    """`http://host:port`, with an IPv6 host in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def read_rates(value: str) -> list[limits.RateLimitItem]:
    """The rates in a `limits` string ("60/minute;1000/day"), none if unreadable.

    `limits` is imported here, not at the top: importing it costs more than
    the rest of this module (it loads its async storage backends), and only
    a rate set away from its default, or the server's limiter, reads one."""
    import limits

    try:
        return limits.parse_many(value)
    except ValueError:
        return []


def _split(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        out: list[Any] = []
        for item in value:
            out.extend(_split(item) if isinstance(item, str) else [item])
        return out
    return [value]


_FIELDS = set(Settings.model_fields)
_BOOL_FIELDS = {
    name for name, field in Settings.model_fields.items() if field.annotation in (bool, bool | None)
}


@dataclass(frozen=True)
class SettingDoc:
    name: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


# Every setting: `config` and each `Settings` field, so a new field cannot miss
# the docs test, which checks that each flag and environment variable below
# appears in the README.
SETTINGS_DOCS = tuple(SettingDoc(name) for name in ("config", *Settings.model_fields))


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in _FIELDS:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = raw
    return values


def env_typos(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per `LNPLUGIN_*` variable that is not a setting but looks
    like a misspelt one (`LNPLUGIN_PUBLC_URL`, `lnplugin_port`).

    Why a warning and not a refusal, as an unknown key in the config file
    gets: the environment is shared, and other `LNPLUGIN_*` names are in use
    that are not settings (the test suite's switches, say). A typo, though,
    used to be dropped without a word, and the server ran on the default:
    without `--public-url`, with no Lightning Addresses, which is hard to
    trace back to one missing letter. Only names within a close edit of a
    real one are reported, so those other names stay quiet.
    """
    environ = os.environ if environ is None else environ
    known = {doc.env.removeprefix(ENV_PREFIX) for doc in SETTINGS_DOCS}
    warnings = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].upper()
        if name == ENV_PREFIX + rest and rest in known:
            continue  # a setting, spelt right
        # The part after the prefix alone: the shared prefix would make
        # short names look alike (HOST and PORT).
        close = difflib.get_close_matches(rest, known, n=1, cutoff=0.8)
        if close:
            warnings.append(
                f"{name} is not a setting lnplugin reads (ignored); "
                f"did you mean {ENV_PREFIX}{close[0]}?"
            )
    return warnings


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        with path.expanduser().open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"invalid setting config: {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"invalid setting config: {path} is a directory") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"invalid setting config: cannot read {path} ({reason})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"invalid setting config: {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid setting config: {path} is not valid TOML ({exc})") from None
    # Accept both `data_dir` and `data-dir` spellings, optionally under [lnplugin].
    section = data.get("lnplugin", data)
    if not isinstance(section, dict):
        raise ConfigError(f"invalid setting config: [lnplugin] in {path} must be a table")
    if section is not data and len(data) > 1:
        # Keys before the [lnplugin] header would be silently ignored.
        outside = next(key for key in data if key != "lnplugin")
        raise ConfigError(
            f"invalid setting {outside} in {path}: outside the [lnplugin] table; put every "
            "setting under [lnplugin], or drop the header"
        )
    values: dict[str, Any] = {}
    for key, value in section.items():
        name = key.replace("-", "_")
        if name not in _FIELDS:
            raise ConfigError(f"invalid setting {key} in {path}: unknown setting")
        if name not in _BOOL_FIELDS and _has_bool(value):
            # TOML's true/false would pass as 1/0 (pydantic's lax int): `port = true`.
            raise ConfigError(f"invalid setting {key} in {path}: true/false is not a valid value")
        values[name] = value
    return values


def _has_bool(value: Any) -> bool:
    if isinstance(value, list):
        return any(isinstance(item, bool) for item in value)
    return isinstance(value, bool)


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge defaults < TOML < environment < flags and validate.

    `flags` holds only the flags the user gave (None values are ignored).
    Raises `ConfigError` with a one-line message naming the bad setting.
    """
    environ = os.environ if environ is None else environ
    flags = {k: v for k, v in (flags or {}).items() if v is not None and v != ()}
    config_path = flags.pop("config", None) or environ.get(ENV_PREFIX + "CONFIG")
    merged: dict[str, Any] = {}
    if config_path:
        merged.update(_from_toml(Path(config_path)))
    from_env = _from_env(environ)
    from_file = set(merged) - set(from_env) - set(flags)
    merged.update(from_env)
    merged.update(flags)
    try:
        return Settings(**merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "?"
        doc = SettingDoc(name)
        # Where the bad value is: the file's key, as its other refusals say, or
        # the flag and variable (the same message either way: both are read).
        if name in from_file:
            where = f" in {config_path}"
        else:
            where = f" ({doc.flag} / {doc.env})" if name in _FIELDS else ""
        message = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"invalid setting {name}{where}: {message}") from None
