"""A TCP proxy for outage tests: it forwards 127.0.0.1:<port> to a target, and can go down
(every open connection cut at once, new ones refused) and come back on the same port.

For a client this looks like a database server restart: connections in use die mid-query,
reconnect attempts are refused for a while (ECONNREFUSED: the listening socket is closed), then
succeed again. It runs on the test's event loop, so the test decides exactly when the cut
happens relative to what the code under test is doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import warnings
from collections.abc import AsyncIterator
from types import TracebackType

_CHUNK = 64 * 1024


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._host = host
        self._port = 0  # chosen by the OS at the first start, then kept across outages
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0
        """How many client connections were accepted (reconnects show up here)."""
        self.cut = 0
        """How many connections (client and server sides counted apart) outages have killed."""

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the proxy has not been started")
        return self._port

    @property
    def is_up(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen (again): on a free port the first time, on the same port afterwards."""
        if self._server is not None:
            return
        # reuse_address: the port was ours a moment ago; connections it leaves in TIME_WAIT
        # must not keep us from listening on it again.
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def go_down(self) -> None:
        """Stop listening (new connections are refused) and abort every open connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        self._abort_all()

    @contextlib.asynccontextmanager
    async def outage(self) -> AsyncIterator[None]:
        """Down for the duration of the block; up again afterwards, whatever happens in it."""
        await self.go_down()
        try:
            yield
        finally:
            await self.start()

    async def close(self) -> None:
        await self.go_down()
        # The aborted sockets end every connection's task within a loop turn or two. Waiting,
        # not cancelling: asyncio logs an error for a cancelled client_connected_cb task.
        tasks = list(self._tasks)
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=5)
            for task in stuck:
                task.cancel()
        # CPython 3.11 leaks the transport of a connection it accepted just as the server closed
        # (`Server._attach` asserts, the error is dropped), in a reference cycle: collect it
        # here, its warning ignored, rather than in a later test's collection (or the
        # session's), where pytest's "error" filter fails that test. tests/unit/test_tcp_proxy.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- forwarding --------------------------------------------------------------------------

    def _abort_all(self) -> None:
        writers, self._writers = self._writers, set()
        for writer in writers:
            # abort(), not close(): drop buffered bytes and the socket now, as a dead server
            # would, instead of flushing politely.
            writer.transport.abort()
        self.cut += len(writers)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        if self._server is None:
            # Accepted just before an outage began, but this task only runs now: the outage
            # must cut it too, or one connection would survive it (a flaky outage test).
            client_w.transport.abort()
            self._tasks.discard(task)
            self.cut += 1
            return
        self._writers.add(client_w)
        try:
            try:
                server_r, server_w = await asyncio.open_connection(*self._target)
            except OSError:
                client_w.transport.abort()
                return
            if client_w not in self._writers:  # an outage began while we connected
                server_w.transport.abort()
                return
            self._writers.add(server_w)
            await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))
        finally:
            self._writers.discard(client_w)
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction until EOF or an error, then close the other side too (a
        connection with one direction gone is dead for a database protocol)."""
        try:
            while data := await reader.read(_CHUNK):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
