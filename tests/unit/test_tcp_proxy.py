"""The outage proxy the PostgreSQL outage tests rely on (tests/tcp_proxy.py): an outage cuts
every connection, including one the OS accepted just before it whose handler had not run yet.
A connection that survived would let a test's store write succeed during the "outage" (the
CI flake of `test_a_stop_ends_with_postgresql_unreachable[forced]`)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.tcp_proxy import TcpProxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _survives(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Whether the connection still carries bytes to the target and back."""
    try:
        writer.write(b"ping")
        await writer.drain()
        async with asyncio.timeout(2):
            return await reader.read(4) == b"ping"
    except (OSError, TimeoutError):
        return False
    finally:
        writer.transport.abort()


# CPython 3.11 leaks the socket of a connection it accepted just as the server closed (its
# transport's `Server._attach` asserts the server is open; the error is dropped unless in
# debug mode): the client sees the connection die, which is what is asserted, but the
# socket's finalizer warns, whenever a collection finds it (`TcpProxy.close` collects it).
# That warning is asyncio's, not the proxy's.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_an_outage_cuts_connections_whatever_stage_they_are_at() -> None:
    target = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = target.sockets[0].getsockname()[1]
    try:
        async with TcpProxy("127.0.0.1", port) as proxy:
            # The outage begins 0, 1, 2, ... loop turns after the client connected: from
            # "accepted by the OS, handler not started" to "forwarding".
            for turns in range(12):
                await proxy.start()
                # A blocking connect: the OS completes it from the listen backlog, before
                # the event loop has accepted it or started the proxy's handler.
                sock = socket.create_connection(("127.0.0.1", proxy.port))
                for _ in range(turns):
                    await asyncio.sleep(0)
                await proxy.go_down()
                reader, writer = await asyncio.open_connection(sock=sock)
                assert not await _survives(reader, writer), f"survived, cut after {turns} turns"

            await proxy.start()  # and once up again, a new connection works
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            assert await _survives(reader, writer)
    finally:
        target.close()
