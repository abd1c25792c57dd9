"""Blocking twins of the scheduler's coroutines, for code that has no event loop (Django, Flask,
scripts, threads) or that must not await (a sync handler, a `def` endpoint).

Where a twin's coroutine runs (docs/sync.md says the same for users):

- **The scheduler is started in this process**: on the scheduler's own loop, through
  `asyncio.run_coroutine_threadsafe`. The store is already in use there, and an enqueue wakes
  the local worker as the async call would. Calling a twin from that loop's own thread (an
  `async def` handler) would block the loop the coroutine needs, so it is a `RuntimeError`.
- **Otherwise**: on a private loop in one daemon thread per scheduler (`timecrisis-sync`),
  started on first use. Every twin of every thread goes there, so many threads at once share
  one store handle, as many tasks of one loop would. The thread is stopped, and the handle it
  opened closed, by `close()`/`close_sync()` or at interpreter exit (`atexit`): nothing is
  left behind.

PostgreSQL's pool belongs to the loop that opened it (its locks and maintenance tasks do), so a
store already used on a loop of the application's (an async web app that also has `def`
endpoints, or sync calls made before `start()`) must not be used from the private loop. The
private loop therefore works on a *clone* of a PostgreSQL store (`PostgresJobStorage.clone()`:
same database, schema and clock, a pool of its own), never on the store itself; the other stores
are thread-safe and loop-agnostic, and are shared.

Measured (docs/performance.md, `make bench`): 8 threads x 1,000 `enqueue_sync` on PostgreSQL
against 8 tasks x 1,000 `enqueue` on one loop.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class Blocking(Protocol):
    """What `blocking_twin` needs of its owner: where to run a coroutine, and on what."""

    def _run_blocking(self, factory: Callable[[Any], Coroutine[Any, Any, T]]) -> T: ...


S = TypeVar("S", bound=Blocking)

_SHUTDOWN_TIMEOUT = 10.0  # seconds: closing the private store must not hang interpreter exit


class SyncBridge:
    """One private event loop in one daemon thread, started on first use.

    `run(factory)` runs `factory()` (a coroutine) there and blocks until it is done. `shutdown`
    runs a last coroutine (closing what the loop opened), stops the loop and joins the thread;
    the bridge can be used again afterwards (a new thread is started)."""

    def __init__(self, name: str = "timecrisis-sync") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._cleanup: Callable[[], Awaitable[None]] | None = None
        _live_bridges.add(self)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The private loop while its thread runs."""
        return self._loop

    def set_cleanup(self, cleanup: Callable[[], Awaitable[None]] | None) -> None:
        """What `shutdown` runs on the private loop before stopping it."""
        self._cleanup = cleanup

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._ensure_loop()
        return wait_for(coro, loop)

    def shutdown(self) -> None:
        """Run the cleanup, stop the loop, join the thread. Idempotent; safe at exit."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            cleanup, self._cleanup = self._cleanup, None
        if loop is None or thread is None:
            return
        if thread is threading.current_thread():
            raise RuntimeError("the sync bridge cannot be shut down from its own loop")
        if cleanup is not None and thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(_quietly(cleanup), loop)
            try:
                future.result(_SHUTDOWN_TIMEOUT)
            except Exception:  # noqa: BLE001 - a cleanup that fails or hangs must not block exit
                future.cancel()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_SHUTDOWN_TIMEOUT)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            started = threading.Event()
            thread = threading.Thread(
                target=_serve, args=(loop, started), name=self._name, daemon=True
            )
            thread.start()
            started.wait()
            self._loop, self._thread = loop, thread
            return loop


def _serve(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    try:
        loop.run_forever()
    finally:
        # Cancel what is left (a twin whose caller gave up), then close the loop.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


async def _quietly(cleanup: Callable[[], Awaitable[None]]) -> None:
    with contextlib.suppress(Exception):  # closing at exit: nothing left to tell
        await cleanup()


def wait_for(coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop) -> T:
    """Run `coro` on `loop` (running in another thread) and block until its result.

    From `loop`'s own thread this would deadlock: `RuntimeError`, naming the async method to
    await instead. If the caller is interrupted (KeyboardInterrupt), the coroutine is
    cancelled rather than left running."""
    if running_loop() is loop:
        coro.close()
        raise RuntimeError(
            "a *_sync method was called on the scheduler's own event loop (from an async "
            "handler or hook?): it would block the loop it needs. Use the async method with "
            "`await` there; the *_sync twins are for threads and code without a loop"
        )
    future: Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def blocking_twin(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], T]:
    """`name_sync` for the async method `name`: the same parameters (types included: mypy reads
    them from the async method, so an option added there is in the twin too) and the same
    result, blocking. The owner's `_run_blocking(factory)` decides where the coroutine runs."""

    def twin(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if kwargs.get("connection") is not None:
            kwargs["connection"] = unwrap_connection(kwargs["connection"])
        return self._run_blocking(lambda target: method(target, *args, **kwargs))

    functools.update_wrapper(twin, method)  # `inspect.signature(twin)` is the async method's
    twin.__name__ = f"{method.__name__}_sync"
    twin.__qualname__ = f"{method.__qualname__}_sync"
    twin.__doc__ = (
        f"Blocking twin of `{method.__name__}` (same arguments and result), callable from any "
        "thread, with or without a running event loop, but not from the scheduler's own loop "
        "(`RuntimeError`). See docs/sync.md."
    )
    return twin


def unwrap_connection(connection: Any) -> Any:
    """The caller's transaction for `enqueue_sync(..., connection=)`: a psycopg `Connection` as
    it is, or the raw psycopg connection of a wrapper such as Django's `connection` (connected
    first, in the caller's thread, since Django connections belong to the thread that opened
    them). Anything else is returned unchanged for the store to refuse."""
    if connection is None or not hasattr(connection, "connection"):
        return connection
    ensure = getattr(connection, "ensure_connection", None)
    if callable(ensure):
        ensure()
    inner = connection.connection
    # Django's psycopg backend may wrap once more; stop at the first psycopg connection.
    for _ in range(3):
        if _is_psycopg_connection(inner) or not hasattr(inner, "connection"):
            break
        inner = inner.connection
    return inner if inner is not None else connection


def _is_psycopg_connection(value: object) -> bool:
    module = type(value).__module__
    return module.startswith("psycopg") and hasattr(value, "transaction")


_live_bridges: weakref.WeakSet[SyncBridge] = weakref.WeakSet()


@atexit.register
def _shutdown_all() -> None:
    # Before the interpreter tears threads down: close each private store cleanly (a PostgreSQL
    # pool says goodbye to the server) and join each thread.
    for bridge in list(_live_bridges):
        bridge.shutdown()
