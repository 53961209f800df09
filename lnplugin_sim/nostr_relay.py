"""A nostr relay on loopback for the NWC tests, the benchmark and trying NWC
by hand: rust-nostr's local relay (`nostr_sdk.LocalRelay`, from the
`nostr-sdk` package lnplugin already depends on), run as its own process.

It is a real relay written by others (NIP-01 over websockets, `OK`
acknowledgements, ephemeral kinds passed to live subscriptions only, events
kept in memory), which is what the tests need; a separate process, so a test
can SIGKILL it under a running lnplugin and start it again on the same port.
Its event rate limit is lifted (`--notes-per-minute` sets one, for the test
of lnplugin's answer to `OK false "rate-limited: ..."`): the benchmark
publishes hundreds of events a second from one connection. `--auth read`,
`write` or `both` makes it require NIP-42 authentication (its
`LocalRelayBuilderNip42`): it sends a challenge and refuses a `REQ` or an
`EVENT` with `auth-required:` until the client has answered it.

One limit cannot be lifted from Python: the relay lets one connection send
about 6,000 messages of any kind, refilled (100 a second) only across pauses
of a second or more, and past that it drops the connection without a close
frame, logging "too many client messages" (run with `--log-level warn` to
see it; `tests/nwc_relay.Relay` does). A busy lnplugin meets it: the default
benchmark sends ~6,400 events on its connection in ~10 s.

    python -m lnplugin_sim.nostr_relay --port 6969

prints `listening ws://127.0.0.1:6969` once it accepts connections and runs
until SIGTERM or SIGINT. With `--port 0` it takes a free port and prints that.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import nostr_sdk as ns

from lnplugin.listening import listening

UNLIMITED = 10_000_000  # events a minute per connection


AUTH_MODES = {
    "read": ns.LocalRelayBuilderNip42Mode.READ,
    "write": ns.LocalRelayBuilderNip42Mode.WRITE,
    "both": ns.LocalRelayBuilderNip42Mode.BOTH,
}


async def serve(
    host: str, port: int, max_connections: int, notes_per_minute: int, auth: str | None = None
) -> None:
    builder = (
        ns.LocalRelayBuilder()
        .addr(host)
        .port(port)
        .max_connections(max_connections)
        .rate_limit(ns.RateLimit(max_reqs=10_000, notes_per_minute=notes_per_minute))
    )
    if auth is not None:
        builder = builder.nip42(ns.LocalRelayBuilderNip42(mode=AUTH_MODES[auth]))
    relay = builder.build()
    before = listening() or set()
    await relay.run()
    url = str(await relay.url()).rstrip("/")
    if port == 0:  # the relay's url says :0; the port it got is the socket it opened
        got = sorted(p for _, p in (listening() or set()) - before)
        url = f"{url.rsplit(':', 1)[0]}:{got[0]}" if got else url
    print(f"listening {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    relay.shutdown()


def parser() -> argparse.ArgumentParser:
    """The command line, apart from `main` so tests/test_docs.py can check the
    docs' command lines against it."""
    parser = argparse.ArgumentParser(description="a nostr relay on loopback (rust-nostr)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6969)
    parser.add_argument("--max-connections", type=int, default=1000)
    parser.add_argument(
        "--notes-per-minute",
        type=int,
        default=UNLIMITED,
        help="events one connection may publish (answered rate-limited past it)",
    )
    parser.add_argument(
        "--auth",
        choices=sorted(AUTH_MODES),
        help="require NIP-42 authentication to read (REQ), to write (EVENT) or both: "
        "refused with auth-required: until the client answers the relay's challenge",
    )
    parser.add_argument(
        "--log-level",
        choices=[level.name.lower() for level in ns.LogLevel],
        help="log the relay's own messages (to stdout) from this level up",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.log_level:
        ns.init_logger(ns.LogLevel[args.log_level.upper()])
    asyncio.run(serve(args.host, args.port, args.max_connections, args.notes_per_minute, args.auth))
    return 0


if __name__ == "__main__":
    sys.exit(main())
