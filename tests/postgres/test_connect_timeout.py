"""`PostgresJobStorage(connect_timeout=)`: a store whose first use finds the server unreachable
fails within the connect timeout, with libpq's reason in the message, not after the pool's 30 s
wait with only "pool initialization incomplete"."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from timecrisis import StorageError
from timecrisis.storage.postgres import PostgresJobStorage

pytestmark = pytest.mark.postgres


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there now: connections are refused


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel completes the handshake into the
    backlog) but never says a word: what a hung server or a black-holing firewall looks like."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


async def test_a_refused_connection_fails_at_once_with_the_reason(closed_port: int) -> None:
    store = PostgresJobStorage(f"postgresql://postgres@127.0.0.1:{closed_port}/test")
    started = time.monotonic()
    with pytest.raises(StorageError, match="Connection refused"):
        await store.get_job("any")
    assert time.monotonic() - started < 10  # the pool alone waited 30 s
    await store.close()


async def test_a_silent_server_fails_within_connect_timeout(silent_port: int) -> None:
    store = PostgresJobStorage(
        f"postgresql://postgres@127.0.0.1:{silent_port}/test", connect_timeout=2
    )
    started = time.monotonic()
    with pytest.raises(StorageError, match="timeout"):
        await store.init()
    assert time.monotonic() - started < 15  # 2 s per address tried, never the pool's 30 s
    await store.close()


def test_connect_timeout_must_be_positive() -> None:
    for bad in (0, -1, "10", True):
        with pytest.raises(ValueError, match="connect_timeout"):
            PostgresJobStorage("postgresql://postgres@127.0.0.1/test", connect_timeout=bad)  # type: ignore[arg-type]
