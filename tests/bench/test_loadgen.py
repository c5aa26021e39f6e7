"""The load generator's count of what each client receives, whole frames or split across reads:
a benchmark that miscounts would hide lost, duplicated or reordered messages."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import pytest

from feed.bench.loadgen import Generator, Track, WsClient
from web.outbox import text_frame


def event(seq: int) -> bytes:
    sent = time.time_ns()
    return text_frame(
        b'{"type":"event","channel":"venue","epoch":"e","seq":%d,"kind":"announcement",'
        b'"data":{"text":"bench %d #%d"}}' % (seq, sent, seq)
    )


@pytest.fixture
def crowd() -> Iterator[tuple[Generator, list[socket.socket]]]:
    gen = Generator("ws://127.0.0.1:9/ws", "venue")
    peers: list[socket.socket] = []
    for _ in range(3):
        mine, theirs = socket.socketpair()
        mine.setblocking(False)
        client = WsClient(gen, Track(), mine)
        client.tcp = client.open = True
        gen._by_fd[mine.fileno()] = client
        gen._epoll.register(mine.fileno(), select.EPOLLIN)
        gen.tracks.append(client.track)
        peers.append(theirs)
    yield gen, peers
    for client in gen._by_fd.values():
        client.sock.close()
    for peer in peers:
        peer.close()
    gen._epoll.close()


def deliver(gen: Generator, peers: list[socket.socket], data: bytes) -> None:
    for peer in peers:
        peer.sendall(data)
    deadline = time.time() + 5
    while time.time() < deadline:
        gen.turn(0.01)
        if all(not select.select([c.sock], [], [], 0)[0] for c in gen._by_fd.values()):
            return


def test_every_client_counts_each_message_once_in_order(
    crowd: tuple[Generator, list[socket.socket]],
) -> None:
    gen, peers = crowd
    gen.expect(0, 8)
    deliver(gen, peers, event(1) + event(2) + event(3))  # the same bytes for everyone
    five = event(5)
    deliver(gen, peers, event(4) + five[:7])  # a frame split across reads
    deliver(gen, peers, five[7:] + event(6))
    result = gen.wait(0.1)
    assert result["received"] == 3 * 6 and result["lost"] == 3 * 2
    assert result["duplicates"] == result["reordered"] == 0
    assert len(result["latencies"]) == 8 * 3 * 6  # one delay per message, as doubles


def test_duplicates_and_late_messages_are_counted(
    crowd: tuple[Generator, list[socket.socket]],
) -> None:
    gen, peers = crowd
    gen.expect(0, 6)
    first, later = event(1) + event(2), event(4) + event(5)
    deliver(gen, peers, first)
    deliver(gen, peers, later)  # 3 is missing so far
    deliver(gen, peers, first)  # again: duplicates
    deliver(gen, peers, event(3))  # late: out of order
    result = gen.wait(0.1)
    assert result["received"] == 3 * 5 and result["lost"] == 3
    assert result["duplicates"] == 3 * 2 and result["reordered"] == 3
