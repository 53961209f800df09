"""A TLS-terminating TCP proxy on loopback: `wss://` in front of the test
relay (`lnplugin_sim/nostr_relay.py`), which speaks plain `ws://` only.

rust-nostr's local relay offers no TLS setting in its Python bindings
(`LocalRelayBuilder` has none), so TLS is put in front of it rather than
into it. That also works in front of any relay variant the tests start
(rate-limited, NIP-42) and keeps the relay process the same one the other
NWC tests use. Each accepted connection is wrapped with the given
certificate, then its bytes are copied both ways to the upstream port
(asyncio, on a thread of its own). The SNI name each client sent is kept
in `names`.

    python -m lnplugin_sim.tls_proxy --port 7443 --upstream 6969 \\
        --cert localhost.pem --key localhost.key

prints `listening wss://localhost:7443` and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import sys
import threading


class TLSProxy:
    """Runs on an event loop of its own, on a thread of its own (one TLS
    object is never read and written from two threads)."""

    def __init__(self, upstream_port: int, cert: str, key: str, port: int = 0) -> None:
        self.upstream = upstream_port
        self.names: list[str | None] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.sni_callback = self._heard
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-proxy")
        self._thread.daemon = True
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", port, ssl=context), self._loop
        ).result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def _heard(self, _sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        self.names.append(name)

    def close(self) -> None:
        """Stop accepting, drop every connection through it, end the loop."""

        async def stop() -> None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            self._writers.difference_update((writer, up_writer))

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, ssl.SSLError):
            pass
        sink.transport.abort()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="TLS in front of a loopback port")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--cert", required=True, help="PEM certificate chain to present")
    parser.add_argument("--key", required=True, help="its PEM private key")
    args = parser.parse_args(argv)
    proxy = TLSProxy(args.upstream, args.cert, args.key, args.port)
    print(f"listening wss://localhost:{proxy.port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    proxy.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
