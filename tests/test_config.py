"""Settings: defaults, then a TOML file, then LNPLUGIN_* environment, then flags.

A bad value is a `ConfigError` whose message is one line naming the setting.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lnplugin.config import DEFAULT_RETRY_SCHEDULE, ConfigError, load_settings


def toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "lnplugin.toml"
    path.write_text(text)
    return str(path)


def config_error(flags=None, environ=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(flags or {}, environ=environ or {})
    message = str(info.value)
    assert "\n" not in message
    return message


# -- defaults --------------------------------------------------------------------------------


def test_defaults_are_the_dev_node_home_data_dir_and_localhost_8080():
    s = load_settings({}, environ={})
    assert s.node == "dev"
    assert s.data_dir == Path("~/.lnplugin").expanduser()
    assert s.host == "127.0.0.1" and s.port == 8080
    assert s.url == "http://127.0.0.1:8080"
    assert s.db_path == s.data_dir / "lnplugin.sqlite"
    assert s.webhook_retry_schedule == DEFAULT_RETRY_SCHEDULE


def test_the_network_defaults_to_regtest_on_the_dev_node_and_bitcoin_elsewhere():
    assert load_settings({}, environ={}).effective_network == "regtest"
    assert load_settings({"node": "lnd"}, environ={}).effective_network == "bitcoin"
    assert load_settings({"node": "cln", "network": "signet"}, environ={}).effective_network == (
        "signet"
    )


def test_data_dir_expands_the_home_directory():
    s = load_settings({"data_dir": "~/somewhere"}, environ={})
    assert s.data_dir == Path.home() / "somewhere"


def test_an_ipv6_host_is_bracketed_in_the_url():
    assert load_settings({"host": "::1", "port": 9}, environ={}).url == "http://[::1]:9"


def test_public_url_replaces_the_printed_url():
    s = load_settings({"public_url": "https://pay.example.com"}, environ={})
    assert s.url == "https://pay.example.com"


# -- precedence --------------------------------------------------------------------------------


def test_flags_beat_environment_beats_toml_beats_defaults(tmp_path):
    path = toml(tmp_path, 'port = 1111\nhost = "0.0.0.0"\nlog_level = "debug"\nthreads = 3\n')
    env = {"LNPLUGIN_PORT": "2222", "LNPLUGIN_HOST": "10.0.0.1"}
    s = load_settings({"config": path, "port": 3333}, environ=env)
    assert s.port == 3333  # flag
    assert s.host == "10.0.0.1"  # environment
    assert s.log_level == "debug"  # TOML
    assert s.node == "dev"  # default


def test_environment_alone_sets_every_kind_of_value():
    env = {
        "LNPLUGIN_DATA_DIR": "/tmp/lnp-env",
        "LNPLUGIN_PORT": "9999",
        "LNPLUGIN_NODE": "cln",
        "LNPLUGIN_NETWORK": "testnet",
        "LNPLUGIN_WEBHOOK_ALLOW": "10.0.0.0/8, 127.0.0.1/32",
        "LNPLUGIN_WEBHOOK_RETRY_SCHEDULE": "1,2,3",
    }
    s = load_settings({}, environ=env)
    assert s.data_dir == Path("/tmp/lnp-env")
    assert s.port == 9999 and s.node == "cln" and s.network == "testnet"
    assert s.webhook_allow == ("10.0.0.0/8", "127.0.0.1/32")
    assert s.webhook_retry_schedule == (1, 2, 3)


def test_empty_environment_variables_are_ignored():
    assert load_settings({}, environ={"LNPLUGIN_PORT": ""}).port == 8080


def test_flags_left_unset_do_not_override(tmp_path):
    path = toml(tmp_path, "port = 1111\n")
    s = load_settings({"config": path, "port": None, "webhook_allow": ()}, environ={})
    assert s.port == 1111


def test_the_config_file_can_come_from_the_environment(tmp_path):
    path = toml(tmp_path, "port = 4444\n")
    assert load_settings({}, environ={"LNPLUGIN_CONFIG": path}).port == 4444


def test_toml_accepts_dashed_keys_and_an_lnplugin_section(tmp_path):
    path = toml(tmp_path, '[lnplugin]\ndata-dir = "/tmp/x"\nwebhook-retry-schedule = [5, 10]\n')
    s = load_settings({"config": path}, environ={})
    assert s.data_dir == Path("/tmp/x")
    assert s.webhook_retry_schedule == (5, 10)


# -- invalid settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "environ", "setting"),
    [
        ({"port": 70000}, {}, "port"),
        ({"port": -1}, {}, "port"),
        ({}, {"LNPLUGIN_PORT": "eighty"}, "port"),
        ({"network": "mainnet"}, {}, "network"),
        ({}, {"LNPLUGIN_NODE": "eclair"}, "node"),
        ({"webhook_allow": ("not-a-cidr",)}, {}, "webhook_allow"),
        ({}, {"LNPLUGIN_WEBHOOK_ALLOW": "10.0.0.0/8,nonsense"}, "webhook_allow"),
        ({"webhook_retry_schedule": "5,soon"}, {}, "webhook_retry_schedule"),
        ({"webhook_retry_schedule": "5,-1"}, {}, "webhook_retry_schedule"),
        ({"webhook_retry_schedule": ","}, {}, "webhook_retry_schedule"),
        ({"threads": 0}, {}, "threads"),
        ({"log_level": "loud"}, {}, "log_level"),
        ({}, {"LNPLUGIN_WEBHOOK_RETRY_SCHEDULE": "inf"}, "webhook_retry_schedule"),
        ({"webhook_retry_schedule": "5,1e300"}, {}, "webhook_retry_schedule"),
        ({"rss_payment_retry_schedule": "5,inf"}, {}, "rss_payment_retry_schedule"),
        ({"data_dir": ""}, {}, "data_dir"),
        ({"host": ""}, {}, "host"),
        ({"lnd_host": "bad host:x"}, {}, "lnd_host"),
        ({"lnd_host": "localhost"}, {}, "lnd_host"),
        ({"lnd_host": ""}, {}, "lnd_host"),
        ({"public_url": "https://pay.example.com:99999"}, {}, "public_url"),
        ({"rate_limit_callback": "0/minute"}, {}, "rate_limit_callback"),
        ({}, {"LNPLUGIN_TOKEN_RATE_LIMIT": "10/second;0/hour"}, "token_rate_limit"),
        ({"nwc_rate_limit": "0/minute"}, {}, "nwc_rate_limit"),
        ({"fiat_provider": [5]}, {}, "fiat_provider"),
        ({"public_url": "https://pay.example.com:0"}, {}, "public_url"),
        ({"public_url": "https://me:pw@pay.example.com"}, {}, "public_url"),
        ({"fiat_provider": ["x=http://127.0.0.1:abc/|a"]}, {}, "fiat_provider"),
        ({"fiat_provider": ["y=http://127.0.0.1:99999/|a"]}, {}, "fiat_provider"),
        ({"client_timeout": 0.5}, {}, "client_timeout"),
        ({}, {"LNPLUGIN_CLIENT_TIMEOUT": "forever"}, "client_timeout"),
    ],
    ids=[
        "port-too-big",
        "port-negative",
        "port-not-a-number",
        "network",
        "node",
        "webhook_allow",
        "webhook_allow-env",
        "retry-not-numbers",
        "retry-negative",
        "retry-empty",
        "threads",
        "log_level",
        "retry-infinite",
        "retry-step-over-30-days",
        "rss-retry-infinite",
        "data_dir-empty",
        "host-empty",
        "lnd_host-not-host-port",
        "lnd_host-no-port",
        "lnd_host-empty",
        "public_url-port",
        "callback-rate-zero",
        "token-rate-zero",
        "nwc-rate-zero",
        "fiat_provider-not-text",
        "public_url-port-zero",
        "public_url-credentials",
        "fiat_provider-port-not-a-number",
        "fiat_provider-port-too-big",
        "client_timeout-too-short",
        "client_timeout-not-a-number",
    ],
)
def test_an_invalid_value_is_one_line_naming_the_setting(flags, environ, setting):
    message = config_error(flags, environ)
    assert setting in message
    assert f"--{setting.replace('_', '-')}" in message  # tells the user which flag to fix


def test_the_error_names_the_environment_variable_too():
    message = config_error(environ={"LNPLUGIN_PORT": "x"})
    assert "LNPLUGIN_PORT" in message


def test_an_unknown_toml_key_is_refused(tmp_path):
    path = toml(tmp_path, "prot = 8080\n")
    message = config_error({"config": path})
    assert "prot" in message and "unknown" in message


def test_a_key_outside_the_lnplugin_table_is_refused_not_ignored(tmp_path):
    path = toml(tmp_path, 'port = 16011\n[lnplugin]\ndata_dir = "/tmp/x"\n')
    message = config_error({"config": path})
    assert message.startswith(f"invalid setting port in {path}: outside the [lnplugin] table")


@pytest.mark.parametrize(
    "line", ["port = true", "threads = false", "webhook_retry_schedule = [true, false]"]
)
def test_true_or_false_is_not_a_number_in_toml(tmp_path, line):
    """pydantic would take them as 1 and 0: `port = true` listened on port 1."""
    path = toml(tmp_path, line + "\n")
    key = line.split(" ")[0]
    assert config_error({"config": path}) == (
        f"invalid setting {key} in {path}: true/false is not a valid value"
    )


def test_true_or_false_still_set_the_switches_in_toml(tmp_path):
    path = toml(tmp_path, "access_log = false\nbootstrap_token = true\n")
    settings = load_settings({"config": path}, environ={})
    assert settings.access_log is False and settings.bootstrap_token is True


def test_a_missing_toml_file_is_refused(tmp_path):
    message = config_error({"config": str(tmp_path / "absent.toml")})
    assert "config" in message and "does not exist" in message


def test_a_toml_file_that_does_not_parse_is_refused_in_one_line(tmp_path):
    path = toml(tmp_path, "port = = 3\n[broken\n")
    message = config_error({"config": path})
    assert "config" in message and "TOML" in message


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"port = 8080\n\xff\xfe\n", "not UTF-8"),
        (b"lnplugin = 5\n", "must be a table"),
    ],
)
def test_a_toml_file_that_is_not_text_or_not_a_table_is_refused_in_one_line(
    tmp_path, content, reason
):
    path = tmp_path / "lnplugin.toml"
    path.write_bytes(content)
    message = config_error({"config": str(path)})
    assert "config" in message and reason in message


def test_a_config_path_that_is_a_directory_is_refused_in_one_line(tmp_path):
    message = config_error(environ={"LNPLUGIN_CONFIG": str(tmp_path)})
    assert "config" in message and "is a directory" in message


def test_a_bad_value_in_toml_names_the_setting(tmp_path):
    """And where it is, as the file's other refusals do: named as the flag
    and the variable, the operator looked for it in the command line and the
    environment, and found neither."""
    path = toml(tmp_path, 'port = "high"\nthreads = 5000\n')
    assert config_error({"config": path}).startswith(f"invalid setting port in {path}: ")
    # Given again in the environment, the bad value is that one.
    message = config_error({"config": path}, environ={"LNPLUGIN_PORT": "higher"})
    assert message.startswith("invalid setting port (--port / LNPLUGIN_PORT): ")
    message = config_error({"config": path, "port": 1})
    assert message.startswith(f"invalid setting threads in {path}: must be between 1 and 1024")


def test_nwc_rate_limit_is_one_rate_read_as_a_burst_and_a_refill() -> None:
    from lnplugin.nwc.worker import RateLimiter

    default = RateLimiter.from_rate(load_settings({}, environ={}).nwc_rate_limit)
    assert (default.burst, default.per_second) == (30, 1.0)
    chosen = load_settings({}, environ={"LNPLUGIN_NWC_RATE_LIMIT": "120/minute"})
    limiter = RateLimiter.from_rate(chosen.nwc_rate_limit)
    assert (limiter.burst, limiter.per_second) == (120, 2.0)
    for bad in ("lots", "5/second;100/hour"):
        with pytest.raises(ConfigError, match="nwc_rate_limit"):
            load_settings({"nwc_rate_limit": bad}, environ={})


# -- misspelt environment variables ------------------------------------------------------------


def test_a_misspelt_environment_variable_is_named_with_the_setting_it_resembles():
    from lnplugin.config import env_typos

    environ = {
        "LNPLUGIN_PUBLC_URL": "https://pay.example.com",
        "lnplugin_port": "9000",
        "LNPLUGIN_NWC_RELAYS": "wss://relay.example.com",
        "LNPLUGIN_PORT": "8080",  # a setting, spelt right
        "PATH": "/usr/bin",
    }
    assert env_typos(environ) == [
        "LNPLUGIN_NWC_RELAYS is not a setting lnplugin reads (ignored); "
        "did you mean LNPLUGIN_NWC_RELAY?",
        "LNPLUGIN_PUBLC_URL is not a setting lnplugin reads (ignored); "
        "did you mean LNPLUGIN_PUBLIC_URL?",
        "lnplugin_port is not a setting lnplugin reads (ignored); did you mean LNPLUGIN_PORT?",
    ]


def test_other_lnplugin_variables_that_resemble_no_setting_stay_quiet():
    # The environment is shared: the test suite's own switches, say.
    from lnplugin.config import SETTINGS_DOCS, env_typos

    others = ["REQUIRE_BROWSER", "REQUIRE_NODE", "DOCKER", "REGTEST", "HYPOTHESIS_EXAMPLES"]
    assert env_typos({f"LNPLUGIN_{name}": "1" for name in others}) == []
    assert env_typos({doc.env: "x" for doc in SETTINGS_DOCS}) == []


@pytest.mark.parametrize(
    "url", ["http://localhost:10009", "https://127.0.0.1:10009", "grpc://lnd.lan:10009"]
)
def test_an_lnd_host_given_as_a_url_is_refused_with_the_host_port_it_means(url):
    """`--lnd-host https://127.0.0.1:10009` started serve, whose follower then
    retried "Misformatted domain name" forever: gRPC takes HOST:PORT."""
    message = config_error({"lnd_host": url})
    assert "lnd_host" in message and "--lnd-host" in message
    assert f"give {url.split('://', 1)[1]}" in message, message
