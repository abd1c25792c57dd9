"""The dashboard served by uvicorn on a free loopback port, in a background thread with its own
event loop, for the browser tests. The store lives on that loop; `call()` runs a coroutine
there, so a test changes the queue while a browser watches."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

import uvicorn

from timecrisis.dashboard import create_app
from timecrisis.storage.base import JobStorage

T = TypeVar("T")


class ServedDashboard:
    def __init__(self, make_storage: Callable[[], JobStorage], **app_options: Any) -> None:
        self._make_storage = make_storage
        self._app_options = app_options
        self._thread = threading.Thread(target=self._run, name="dashboard-server", daemon=True)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._storage: JobStorage | None = None
        self._failure: BaseException | None = None
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServedDashboard:
        self._thread.start()
        if not self._ready.wait(timeout=30) or self._failure is not None:
            raise RuntimeError("the dashboard server did not start") from self._failure
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()

    def call(self, action: Callable[[JobStorage], Awaitable[T]]) -> T:
        """Run `action(store)` on the server's loop and return its result."""
        assert self._loop is not None and self._storage is not None
        storage = self._storage

        async def run() -> T:
            return await action(storage)

        future: Future[T] = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return future.result(timeout=30)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to the test thread by __enter__
            self._failure = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._storage = self._make_storage()
        try:
            app = create_app(self._storage, **self._app_options)
            config = uvicorn.Config(
                app, lifespan="off", ws="none", http="h11", log_level="warning", access_log=False
            )
            self._server = uvicorn.Server(config)
            serving = asyncio.create_task(self._server.serve(sockets=[self._socket]))
            while not self._server.started and not serving.done():
                await asyncio.sleep(0.01)
            self._ready.set()
            await serving
        finally:
            await self._storage.close()
