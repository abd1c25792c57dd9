"""The worker's side of the fork server: start it, ask it for children, learn how they ended.

One fork server per worker process, shared by every scheduler and event loop in it (like
multiprocessing's forkserver), started on the first fork-mode attempt and restarted if it dies.
Requests go out on a non-blocking datagram socket with the child's socket attached; a daemon
thread reads the server's reports and resolves each waiter's future on that waiter's own loop.
When the worker process exits, the server sees its end of stream, kills any child still running
and exits; an `atexit` hook closes the sockets and reaps it.

Why a fork server of our own rather than `multiprocessing` (`benchmarks/fork_overhead.py`, a
bare child from start to exit status, on a 2-vCPU development VM): `spawn` boots an interpreter and
re-imports the worker's `__main__` (and so timecrisis) per child: 580 ms. `forkserver`, even
with timecrisis preloaded, re-runs `__main__` in every child and unpickles its bootstrap state:
37 ms; its `Process.start()` also blocks the event loop until the pid arrives, and exit statuses
are read by whichever thread polls first. This server: 7 ms (forking the worker itself, which is
not clean, costs 4 ms there). It never blocks the event loop, re-creates `__main__` only for
handlers defined there, and puts each child in a process group of its own.

A process forked from the worker (by the user's own code) must not use the worker's server: the
sockets are shared after a fork, and reports would go to whichever process reads first. So a
connection belongs to the process that opened it; a fork starts its own server if it needs one,
and never shuts down its parent's.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, TypeVar

from timecrisis.execution._protocol import ProtocolError, read_frame_blocking

_T = TypeVar("_T")

_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from timecrisis.execution._fork_server_main import main; "
    "main(int(sys.argv[2]), int(sys.argv[3]))"
)

# A full request queue (the server is busy forking) is retried after this long.
_SEND_RETRY_DELAY = 0.001


class ForkServerError(Exception):
    """The fork server could not start a child (it died, or fork() failed)."""


def _resolve(loop: asyncio.AbstractEventLoop, future: asyncio.Future[_T], value: _T) -> None:
    def apply() -> None:
        if not future.done():
            future.set_result(value)

    with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
        loop.call_soon_threadsafe(apply)


def _reject(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], exc: Exception) -> None:
    def apply() -> None:
        if not future.done():
            future.set_exception(exc)

    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(apply)


def signal_group(pid: int, signum: int) -> None:
    """Signal a child's process group (the handler and what it started); fall back to the
    child alone if its group is not set up yet. A process already gone is not an error."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


@dataclass(eq=False)
class ForkedChild:
    """A running child. `exit_code` resolves to its exit status (negative: the signal that
    killed it), or to None if the fork server died first and the status is lost."""

    pid: int
    exit_code: asyncio.Future[int | None]

    def signal(self, signum: int) -> None:
        if not self.exit_code.done():  # once reaped, its pid may belong to someone else
            signal_group(self.pid, signum)


@dataclass(eq=False)
class _Pending:
    loop: asyncio.AbstractEventLoop
    child: asyncio.Future[ForkedChild]
    # Created here, on the waiter's loop thread, not in the reader thread.
    exit_code: asyncio.Future[int | None]
    abandoned: bool = False


@dataclass(eq=False)
class _Connection:
    process: subprocess.Popen[bytes]
    requests: socket.socket
    reports: socket.socket
    alive: bool = True
    owner_pid: int = field(default_factory=os.getpid)
    pending: dict[int, _Pending] = field(default_factory=dict)
    children: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[int | None]]] = field(
        default_factory=dict
    )
    # What this server was asked to preload (see `_preload`), by the names it imports.
    preloaded: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def read_reports(self) -> None:
        """The reader thread: dispatch reports until the server's end of stream."""
        try:
            while True:
                message = read_frame_blocking(self.reports)
                if message is None:
                    break
                self._dispatch(message)
        except (OSError, ProtocolError):
            pass
        finally:
            self._server_gone()

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["t"]
        with self.lock:
            if kind == "exited":
                entry = self.children.pop(message["pid"], None)
                if entry is not None:
                    _resolve(entry[0], entry[1], int(message["code"]))
                return
            pending = self.pending.pop(message["id"], None)
            if pending is None:
                return
            if kind == "fork_failed":
                _reject(pending.loop, pending.child, ForkServerError(message["error"]))
                return
            pid = int(message["pid"])
            if pending.abandoned:  # its attempt was cancelled while the fork was in flight
                signal_group(pid, signal.SIGKILL)
            self.children[pid] = (pending.loop, pending.exit_code)
            _resolve(pending.loop, pending.child, ForkedChild(pid, pending.exit_code))

    def _server_gone(self) -> None:
        with self.lock:
            self.alive = False
            for pending in self.pending.values():
                _reject(pending.loop, pending.child, ForkServerError("the fork server exited"))
            for pid, (loop, exit_code) in self.children.items():
                # Orphaned by the server: kill it, as the server would have done.
                signal_group(pid, signal.SIGKILL)
                _resolve(loop, exit_code, None)
            self.pending.clear()
            self.children.clear()
        self.close()

    def close(self) -> None:
        with self.lock:
            self.alive = False
        if os.getpid() != self.owner_pid:
            # Inherited through a fork: close our copies only. A shutdown() would act on the
            # socket shared with the owner and make the server kill the owner's children.
            self.requests.close()
            self.reports.close()
            return
        self.requests.close()
        with contextlib.suppress(OSError):
            self.reports.shutdown(socket.SHUT_RDWR)  # wakes the reader thread, tells the server
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reports.close()


class ForkServer:
    """Forks children for fork-mode attempts. Safe to share between threads and event loops."""

    def __init__(self, python: str | None = None) -> None:
        self._python = python or sys.executable
        self._lock = threading.Lock()
        self._connection: _Connection | None = None
        self._ids = itertools.count(1)
        self._atexit_registered = False

    def _connect(self) -> _Connection:
        with self._lock:
            connection = self._connection
            if connection is not None and connection.owner_pid != os.getpid():
                connection.close()  # inherited through a fork: the parent's, not ours
                connection = None
            if connection is not None and connection.alive:
                return connection
            connection = self._start()
            self._connection = connection
            if not self._atexit_registered:
                atexit.register(self.close)
                self._atexit_registered = True
            return connection

    def _start(self) -> _Connection:
        worker_requests, server_requests = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        worker_reports, server_reports = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = subprocess.Popen(
                [
                    self._python,
                    "-c",
                    _BOOT,
                    json.dumps(sys.path),
                    str(server_requests.fileno()),
                    str(server_reports.fileno()),
                ],
                pass_fds=(server_requests.fileno(), server_reports.fileno()),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            for sock in (worker_requests, worker_reports):
                sock.close()
            raise
        finally:
            server_requests.close()
            server_reports.close()
        worker_requests.setblocking(False)
        connection = _Connection(process, worker_requests, worker_reports)
        threading.Thread(
            target=connection.read_reports, name="timecrisis-fork-server", daemon=True
        ).start()
        return connection

    async def fork(self, child_socket: socket.socket) -> ForkedChild:
        """Fork a child that runs `_child.run` on (a duplicate of) `child_socket`."""
        loop = asyncio.get_running_loop()
        connection = self._connect()
        request_id = next(self._ids)
        pending = _Pending(loop, loop.create_future(), loop.create_future())
        data = json.dumps({"t": "fork", "id": request_id}).encode()
        sent = False
        try:
            while not sent:
                # Under the lock: the reader thread closes the socket when the server dies.
                with connection.lock:
                    if not connection.alive:
                        raise ForkServerError("the fork server exited")
                    try:
                        socket.send_fds(connection.requests, [data], [child_socket.fileno()])
                    except BlockingIOError:
                        pass
                    except OSError as exc:
                        raise ForkServerError(f"the fork server is unreachable: {exc}") from exc
                    else:
                        connection.pending[request_id] = pending
                        sent = True
                if not sent:  # the server's queue is full while it forks: wait a moment
                    await asyncio.sleep(_SEND_RETRY_DELAY)
            return await asyncio.shield(pending.child)
        except BaseException:
            with connection.lock:
                pending.abandoned = True  # if its pid arrives later, it is killed at once
            if pending.child.done() and not pending.child.cancelled():
                with contextlib.suppress(Exception):
                    pending.child.result().signal(signal.SIGKILL)
            raise

    def preload(self, request: dict[str, Any]) -> None:
        """Ask the running server, once per handler and schema, to import what `request`
        names (see `_preload`). Best effort and never blocking: if the request cannot be sent
        now, a later child asks again."""
        key = json.dumps([request["objects"], request["main"]], sort_keys=True)
        with self._lock:
            connection = self._connection
        if connection is None or connection.owner_pid != os.getpid():
            return
        with connection.lock:
            if not connection.alive or key in connection.preloaded:
                return
            try:
                connection.requests.send(json.dumps(request).encode())
            except OSError:  # a full queue, or a request too large for a datagram
                return
            connection.preloaded.add(key)

    def close(self) -> None:
        """Stop the server (it kills children still running) and reap it."""
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


_default: ForkServer | None = None
_default_lock = threading.Lock()


def default_fork_server() -> ForkServer:
    """The process-wide fork server."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ForkServer()
        return _default
