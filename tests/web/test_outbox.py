"""The fan-out's write path: one frame per message, one write per client per turn of the loop."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import pytest
from aiohttp import web

from feed.errors import CloseCode
from web.client import WebSocketClient
from web.outbox import MAX_GATHER, Outbox, text_frame


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_text_frames_have_the_rfc_6455_header(size: int, header: bytes) -> None:
    payload = b"x" * size
    assert text_frame(payload) == header + payload


class Transport:
    """Records writes; says how much it holds unsent."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.unsent = 0
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


class Socket:
    def __init__(self) -> None:
        self.closed_with: int | None = None

    async def close(self, *, code: int, message: bytes) -> bool:
        self.closed_with = code
        return True


def client(outbox: Outbox, transport: Transport, max_bytes: int = 1000) -> WebSocketClient:
    ws = cast(web.WebSocketResponse, Socket())
    return WebSocketClient(ws, cast(Any, transport), outbox, max_bytes)


async def turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_a_burst_goes_out_in_one_write_per_client_with_frames_built_once() -> None:
    outbox = Outbox()
    a, b = Transport(), Transport()
    ca, cb = client(outbox, a), client(outbox, b)
    events = [b'{"seq":1}', b'{"seq":2}', b'{"seq":3}']
    for event in events:
        ca.send(event)
        cb.send(event)
    assert a.writes == b.writes == []  # nothing written before the turn ends
    await turn()
    assert a.writes == b.writes == [b"".join(text_frame(e) for e in events)]
    single = b'{"seq":4}'
    ca.send(single)
    cb.send(single)
    await turn()
    assert a.writes[1] is b.writes[1]  # the very same bytes for both


async def test_a_client_that_leaves_too_much_unread_is_closed_as_slow() -> None:
    outbox = Outbox()
    slow, quick = Transport(), Transport()
    cs, cq = client(outbox, slow, max_bytes=100), client(outbox, quick, max_bytes=100)
    big = b"y" * 500
    cs.send(big)  # more than the limit at once is fine while nothing is left unread
    cq.send(big)
    await turn()
    assert len(slow.writes) == 1
    slow.unsent = 500  # it has not read it
    quick.unsent = 0
    cs.send(b"{}")
    cq.send(b"{}")
    await turn()
    assert cs.close_code == CloseCode.SLOW and len(slow.writes) == 1
    assert cq.close_code is None and len(quick.writes) == 2
    await asyncio.wait_for(cs.closed, 6)
    assert slow.aborted


class Broken(Transport):
    def write(self, data: bytes) -> None:
        raise OSError("the socket broke in a way nobody expected")


async def test_one_client_failing_to_write_does_not_stop_the_others() -> None:
    outbox = Outbox()
    broken, fine = Broken(), Transport()
    cb, cf = client(outbox, broken), client(outbox, fine)
    for c in (cb, cf):
        c.send(b"{}")
    await turn()
    assert broken.aborted and fine.writes == [text_frame(b"{}")]
    cf.send(b"[]")
    # At the end of the turn, or after a gathering if logging the failure made that flush long.
    deadline = time.monotonic() + 5 * MAX_GATHER
    while fine.writes[-1] != text_frame(b"[]"):
        assert time.monotonic() < deadline, "the fine client's next frame was never written"
        await asyncio.sleep(0.005)


class SlowTransport(Transport):
    """A write that takes `seconds`, as 10,000 of them do together."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def write(self, data: bytes) -> None:
        time.sleep(self.seconds)
        super().write(data)


async def test_after_a_long_flush_the_next_one_gathers_what_arrives_meanwhile() -> None:
    outbox = Outbox()
    slow = SlowTransport(0.02)
    c = client(outbox, slow)
    c.send(b"1")
    await turn()
    assert slow.writes == [text_frame(b"1")]  # the first flush: at the end of the turn
    c.send(b"2")
    await turn()
    assert len(slow.writes) == 1  # the last flush took 20 ms: this one waits about as long
    c.send(b"3")
    deadline = time.monotonic() + 5 * MAX_GATHER
    while len(slow.writes) < 2:
        assert time.monotonic() < deadline, "the gathered frames were never written"
        await asyncio.sleep(0.005)
    assert slow.writes[1] == text_frame(b"2") + text_frame(b"3")  # both in one write


async def test_after_a_quick_flush_the_next_one_comes_at_the_end_of_the_turn() -> None:
    outbox = Outbox()
    fast = Transport()
    c = client(outbox, fast)
    for n in range(3):
        c.send(b"%d" % n)
        await turn()
        assert len(fast.writes) == n + 1
