"""The LISTEN side of PostgreSQL wake-ups: one dedicated connection per store.

Why a dedicated connection, not a pooled one: a LISTEN belongs to a session, and a pooled
connection is handed to other work between uses. Why it can never be trusted alone: a
notification sent while the connection is down is gone for good. So:

- after every (re)connect the listener wakes its subscribers once, and the claim that follows
  finds whatever was enqueued while it was away;
- when the channel is quiet for `keepalive` seconds it runs `SELECT 1`, so a connection that the
  server or a firewall dropped silently is noticed, closed and replaced;
- after any error it logs, waits (exponential backoff, capped), and reconnects, forever, until
  it is stopped. Workers poll at their interval regardless: a notification is only a hint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql

logger = logging.getLogger("timecrisis.storage.postgres")

Connect = Callable[[], Awaitable[AsyncConnection[Any]]]


class NotificationListener:
    """LISTENs on `channel` and calls `on_wake()` (from its task, on its loop) for every
    notification and after every (re)connect."""

    def __init__(
        self,
        connect: Connect,
        channel: str,
        on_wake: Callable[[], None],
        *,
        keepalive: float = 30.0,
        initial_backoff: float = 0.05,
        max_backoff: float = 5.0,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._on_wake = on_wake
        self._keepalive = keepalive
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self.connections = 0
        """How many times a LISTEN was established (tests watch it grow after a kill)."""
        self.listening = asyncio.Event()
        """Set while the LISTEN is in place; cleared as soon as the connection is lost."""
        self.backend_pid: int | None = None
        """The server process of the current LISTEN connection (for operators and tests)."""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start listening on the running event loop (idempotent)."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"timecrisis-listen-{self._channel}"
            )

    def cancel(self) -> asyncio.Task[None] | None:
        """Stop without waiting; returns the task, still finishing its cleanup, if any."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    async def stop(self) -> None:
        task = self.cancel()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        delay = self._initial_backoff
        while True:
            conn: AsyncConnection[Any] | None = None
            try:
                conn = await self._connect()
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                self.connections += 1
                self.backend_pid = conn.info.backend_pid
                self.listening.set()
                if self.connections > 1:
                    logger.info(
                        "LISTEN connection re-established",
                        extra={"action": "listen_reconnected", "channel": self._channel},
                    )
                delay = self._initial_backoff
                self._on_wake()  # catch up on anything sent while we were not listening
                while True:
                    async for _ in conn.notifies(timeout=self._keepalive):
                        self._on_wake()
                    await conn.execute("SELECT 1")  # a quiet channel: is the line still up?
            except (psycopg.Error, OSError) as exc:
                logger.warning(
                    "LISTEN connection lost or refused (%s); reconnecting in %.2fs",
                    exc,
                    delay,
                    extra={"action": "listen_failed", "channel": self._channel},
                )
            finally:
                self.listening.clear()
                self.backend_pid = None
                if conn is not None:
                    await conn.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff)
