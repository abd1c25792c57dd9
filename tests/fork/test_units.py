"""The pieces of fork mode that need no process: framing, exit descriptions, errors."""

from __future__ import annotations

import asyncio
import signal
import socket

import pytest

from timecrisis import NonRetryableError
from timecrisis.execution._protocol import (
    MAX_FRAME,
    ProtocolError,
    encode_frame,
    read_frame,
    read_frame_blocking,
)
from timecrisis.execution.fork_errors import ForkedHandlerError, describe_exit, handler_error


async def test_frames_round_trip_between_a_blocking_and_an_asyncio_end() -> None:
    messages: list[dict[str, object]] = [
        {"t": "log", "message": "line\nbreak ✓", "metadata": {"n": [1, 2.5, None]}},
        {"t": "result", "value": "x" * 200_000},
    ]
    worker_end, child_end = socket.socketpair()
    with child_end:
        reader, writer = await asyncio.open_unix_connection(sock=worker_end, limit=1 << 20)
        try:
            for message in messages:
                child_end.sendall(encode_frame(message))
            writer.write(encode_frame({"t": "shutdown"}))
            await writer.drain()
            assert read_frame_blocking(child_end) == {"t": "shutdown"}
            child_end.shutdown(socket.SHUT_WR)
            assert [await read_frame(reader) for _ in messages] == messages
            assert await read_frame(reader) is None  # a clean end of stream
        finally:
            writer.close()
            await writer.wait_closed()


async def test_malformed_frames_are_protocol_errors() -> None:
    for raw in [
        b"\x00\x00\x00\x02{}",  # no "t"
        b"\x00\x00\x00\x03[1]",  # not an object
        b"\x00\x00\x00\x03{\xff}",  # not UTF-8 JSON
        (MAX_FRAME + 1).to_bytes(4, "big"),  # announces too much
        b"\x00\x00\x00\x09{}",  # ends inside the frame
        b"\x00\x00",  # ends inside the header
    ]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        with pytest.raises(ProtocolError):
            await read_frame(reader)


def test_exit_statuses_read_as_words() -> None:
    assert describe_exit(3) == "the child process exited with status 3"
    assert describe_exit(-signal.SIGSEGV) == "the child process was killed by signal SIGSEGV (11)"
    killed = describe_exit(-signal.SIGKILL)
    assert killed.endswith("the kernel's out-of-memory killer sends SIGKILL")
    assert describe_exit(0) == "the child process exited (status 0) without reporting a result"
    assert "unknown" in describe_exit(None)


def test_a_handlers_exception_is_recreated_under_its_own_name() -> None:
    error = handler_error("ValueError", "builtins", "", "trace", non_retryable=False)
    assert isinstance(error, ForkedHandlerError) and not isinstance(error, NonRetryableError)
    assert (type(error).__name__, str(error), error.remote_type) == ("ValueError", "", "ValueError")
    custom = handler_error("Oops", "app.errors", "no", "", non_retryable=True)
    assert isinstance(custom, NonRetryableError)
    assert f"{type(custom).__name__}: {custom}" == "Oops: no"
    assert custom.remote_type == "app.errors.Oops"
    again = handler_error("Oops", "app.errors", "again", "", non_retryable=True)
    assert type(again) is type(custom)  # one class per name, not one per failure
