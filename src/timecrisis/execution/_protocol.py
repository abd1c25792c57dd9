"""Framing for the sockets between a worker, its fork server and its fork-mode children.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON holding one object
with a string `"t"` (its kind). JSON, so that nothing a child sends is ever unpickled in the
worker; length-prefixed, so a message may hold any text and is read without scanning for a
delimiter. Both ends use the same helpers: the worker reads with asyncio, the child and the fork
server read with blocking sockets (each in a thread of its own where it matters).
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Mapping
from typing import Any

Message = dict[str, Any]

_HEADER = struct.Struct(">I")

# A cap on one message, so a corrupt length cannot make a reader allocate gigabytes. Payloads and
# results cross in one message each; 64 MiB is far beyond what a job payload should hold.
MAX_FRAME = 64 * 1024 * 1024


class ProtocolError(Exception):
    """The other end sent something that is not a well-formed message."""


def encode_frame(message: Mapping[str, Any]) -> bytes:
    """One message as a frame. Raises `TypeError`/`ValueError` if it is not JSON-encodable."""
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME:
        raise ValueError(f"a message of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    return _HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> Message:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"a message is not valid JSON: {exc}") from None
    if not isinstance(value, dict) or not isinstance(value.get("t"), str):
        raise ProtocolError("a message must be a JSON object with a string 't'")
    return value


def _check_size(header: bytes) -> int:
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ProtocolError(f"a frame announces {size} bytes, more than the {MAX_FRAME} allowed")
    return int(size)


async def read_frame(reader: asyncio.StreamReader) -> Message | None:
    """The next message, or None at a clean end of stream (between two frames)."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("the stream ended inside a frame header") from None
        return None
    size = _check_size(header)
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise ProtocolError("the stream ended inside a frame") from None
    return decode_body(body)


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame_blocking(sock: socket.socket) -> Message | None:
    """Blocking twin of `read_frame` for a plain socket."""
    header = _receive_exactly(sock, _HEADER.size)
    if not header:
        return None
    if len(header) < _HEADER.size:
        raise ProtocolError("the stream ended inside a frame header")
    size = _check_size(header)
    body = _receive_exactly(sock, size)
    if len(body) < size:
        raise ProtocolError("the stream ended inside a frame")
    return decode_body(body)
