"""The live-stream writer of the asyncio server (`lnplugin.run.asgi.Writer`)
on a real event loop, with an ASGI `send` that the test holds back as a
paused transport would: a client that does not read never makes the server
block or buffer without bound, and what waited goes out in order once it reads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lnplugin.hub import MAX_BACKLOG, EventHub, Subscription, message, state_message
from lnplugin.run.asgi import Writer
from lnplugin.store import Store, events
from tests.helpers_store import invoice_by_id, open_invoice


class PausableSend:
    """An ASGI send that writes at once, or (paused) waits until resumed."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.gate: asyncio.Future[None] | None = None

    async def __call__(self, event: dict[str, Any]) -> None:
        if self.gate is not None:
            await self.gate
        self.sent.append(event["body"])

    def pause(self) -> None:
        self.gate = asyncio.get_running_loop().create_future()

    def resume(self) -> None:
        assert self.gate is not None
        gate, self.gate = self.gate, None
        gate.set_result(None)


def _run(test: Any) -> None:
    asyncio.run(test())


def test_writes_go_out_at_once_while_the_client_reads() -> None:
    async def test() -> None:
        send = PausableSend()
        writer = Writer(send, asyncio.Event())
        writer.write(b"a")
        writer.write(b"b")
        assert send.sent == [b"a", b"b"] and not writer.stalled(0)

    _run(test)


def test_a_paused_write_queues_the_rest_and_drains_in_order() -> None:
    async def test() -> None:
        send = PausableSend()
        wake = asyncio.Event()
        writer = Writer(send, wake)
        send.pause()
        writer.write(b"1")
        assert wake.is_set() and writer.stalled(0)  # the stream's task must take over
        writer.write(b"2")
        writer.write(b"3")
        assert send.sent == [] and writer.stalled(2) and not writer.stalled(3)
        asyncio.get_running_loop().call_later(0.01, send.resume)
        assert await writer.drain(lambda: False, timeout=30)
        assert send.sent == [b"1", b"23"] and not writer.stalled(0)

    _run(test)


def test_a_client_that_never_reads_is_given_up_after_the_timeout() -> None:
    async def test() -> None:
        send = PausableSend()
        writer = Writer(send, asyncio.Event())
        send.pause()
        writer.write(b"x")
        assert not await writer.drain(lambda: False, timeout=0.05)
        writer.abandon()
        assert writer.blocked is None and not writer.pending

    _run(test)


def test_a_stream_whose_client_falls_behind_the_backlog_is_cut_off() -> None:
    async def test() -> None:
        send = PausableSend()
        writer = Writer(send, asyncio.Event())
        sub = Subscription(lambda row: True, None)
        sub.go_direct(writer.write, 0, writer.stalled, MAX_BACKLOG)
        send.pause()
        big = "x" * 4096
        seq = 0
        while not sub.ended:
            seq += 1
            sub.push(seq, "invoice.incoming.created", message(seq, "invoice.incoming.created", big))
            assert seq < 1000, "never cut off"
        assert sub.overflowed
        assert writer.pending_bytes <= MAX_BACKLOG + 5000  # bounded: nothing more was kept
        writer.abandon()

    _run(test)


def test_a_burst_reaches_a_live_stream_in_one_write_and_stops_at_its_final_event() -> None:
    sub = Subscription(lambda row: True, 1, final_ends=True)
    written: list[bytes] = []
    sub.go_direct(written.append, 1, lambda limit: False, MAX_BACKLOG)
    burst = [
        (1, "invoice.incoming.created", message(1, "invoice.incoming.created", "{}")),  # sent
        (2, "invoice.incoming.created", message(2, "invoice.incoming.created", "{}")),
        (3, "invoice.incoming.settled", message(3, "invoice.incoming.settled", "{}")),
        (4, "invoice.incoming.settled", message(4, "invoice.incoming.settled", "{}")),
    ]
    sub.push_many(burst)
    assert written == [burst[1][2] + burst[2][2]]
    assert sub.finished and sub.last_sent == 3


def test_one_read_of_several_events_reaches_each_loop_stream_in_one_write(tmp_path: Path) -> None:
    """The hub reads two events of one commit at once: every loop stream gets
    what it wants of them in one write, in order, and no stream gets another's
    messages (the hub shares one message list among the streams of an event)."""
    store = Store(tmp_path / "lnplugin.sqlite")
    invoice_id = open_invoice(store)
    hub = EventHub(store)
    hub.start()

    async def test() -> None:
        loop = asyncio.get_running_loop()
        streams = {
            "all": Subscription(lambda row: True, None, loop=loop),
            "created only": Subscription(
                lambda row: row["type"] == events.INCOMING_CREATED, None, loop=loop
            ),
            "checkout": Subscription(lambda row: True, invoice_id, loop=loop, state_only=True),
        }
        written: dict[str, list[bytes]] = {name: [] for name in streams}
        for name, sub in streams.items():
            sub.go_direct(written[name].append, 0, lambda limit: False, MAX_BACKLOG)
            hub.subscribe(sub)

        async def until(got: Callable[[], bool], tries: int) -> bool:
            for _ in range(tries):  # 10 ms apart
                if got():
                    return True
                await asyncio.sleep(0.01)
            return got()

        # Another invoice's events first, until one is out: the hub's thread
        # starts at the outbox's head, so one committed before it ran is
        # never sent. Once `all` has sent the last of them, everything the
        # hub will ever send of them is out.
        other = open_invoice(store, "cd" * 32)
        warm = [0]

        def warmed() -> bool:
            return streams["all"].last_sent >= warm[0]

        for _ in range(50):
            with store.transaction() as tx:
                warm[0] = events.append(tx, events.INCOMING_CREATED, invoice_by_id(tx, other))
            if await until(warmed, 20):
                break
        assert written["all"] and not written["checkout"]
        for sent in written.values():
            sent.clear()
        with store.transaction() as tx:
            invoice = invoice_by_id(tx, invoice_id)
            events.append(tx, events.INCOMING_CREATED, invoice)
            events.append(tx, events.INCOMING_SETTLED, invoice)
        await until(lambda: all(written.values()), 1000)
        created, settled = events.after(store.conn, warm[0])
        assert written["all"] == [
            message(created["seq"], created["type"], created["payload"])
            + message(settled["seq"], settled["type"], settled["payload"])
        ]
        assert written["created only"] == [
            message(created["seq"], created["type"], created["payload"])
        ]
        assert written["checkout"] == [state_message("CREATED") + state_message("SETTLED")]

    try:
        _run(test)
    finally:
        hub.stop()
        store.close()
