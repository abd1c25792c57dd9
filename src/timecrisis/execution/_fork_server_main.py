"""The fork server process: a fresh interpreter that forks one child per fork-mode attempt.

Started by the worker (see `fork_server.py`) with two sockets:

- `requests` (datagrams, worker -> server): `{"t": "fork", "id": N}`, each carrying the child's
  end of that job's socket as an SCM_RIGHTS file descriptor, and `preload` (see `_preload`),
  which names a handler and schema to import here, once, for every later child;
- `reports` (a stream of frames, server -> worker): `forked` (id, pid), `fork_failed` (id,
  error), `exited` (pid, code: the exit status, negative for a signal). The worker never writes
  to it: its end of stream means the worker is gone.

The server never ran an event loop, started a thread or opened a connection, so what a child
inherits is clean (spawn semantics); it imports timecrisis and pydantic once, so a child starts
in a millisecond or two instead of booting an interpreter. It is the children's parent: it reaps
each one (no zombies) and reports its exit status. Each child leads its own process group, so
the worker can signal the handler together with any processes it started, so that whatever is
left in the group when the child exits is killed before the child is reaped, and so a Ctrl-C in
the worker's terminal reaches the worker (which then stops gracefully) and not the handlers.
When the worker goes away the server kills every child's group and exits: no orphans.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import selectors
import signal
import socket
import sys
import traceback
from typing import Any, NoReturn

from timecrisis.execution import _child
from timecrisis.execution._preload import preload
from timecrisis.execution._protocol import encode_frame

# A preload request carries the worker's sys.path.
_MAX_REQUEST = 1 << 16


class _WorkerGone(Exception):
    pass


class _Server:
    def __init__(self, requests: socket.socket, reports: socket.socket) -> None:
        self.requests = requests
        self.reports = reports
        self.children: set[int] = set()
        self.wakeup_r, self.wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(self.wakeup_w, False)
        self.selector = selectors.DefaultSelector()

    def serve(self) -> None:
        # SIGCHLD wakes the selector through the wakeup fd; a handler is needed for that (the
        # default action ignores the signal without waking anyone).
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wakeup_w)
        for fileobj in (self.requests, self.reports, self.wakeup_r):
            self.selector.register(fileobj, selectors.EVENT_READ)
        try:
            while True:
                for key, _ in self.selector.select():
                    if key.fileobj is self.reports:
                        self._check_worker()
                    elif key.fileobj is self.wakeup_r:
                        self._reap()
                    else:
                        self._fork_requested()
        except _WorkerGone:
            self._kill_all()

    def _report(self, message: dict[str, Any]) -> None:
        try:
            self.reports.sendall(encode_frame(message))
        except OSError:
            raise _WorkerGone from None

    def _check_worker(self) -> None:
        if not self.reports.recv(4096):
            raise _WorkerGone

    def _reap(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wakeup_r, 4096):
                pass
        while True:
            try:
                pid, status = self._reap_one()
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self._report({"t": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})

    def _reap_one(self) -> tuple[int, int]:
        """(pid, wait status) of an exited child, reaped; (0, 0) if none has exited."""
        if not hasattr(os, "waitid"):  # macOS before Python 3.13: no sweep
            return os.waitpid(-1, os.WNOHANG)
        # WNOWAIT: learn which child exited but leave it a zombie for now. Until it is reaped
        # its pid, and so its process group id, cannot be reused, so the group can be swept
        # safely: what the handler started does not outlive it.
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is None:
            return 0, 0
        if info.si_pid in self.children:
            with contextlib.suppress(OSError):
                os.killpg(info.si_pid, signal.SIGKILL)
        return os.waitpid(info.si_pid, 0)

    def _fork_requested(self) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.requests, _MAX_REQUEST, 4)
        except BlockingIOError:
            return
        try:
            request = json.loads(data)
            if request.get("t") == "preload" and not fds:
                preload(request)
                return
            request_id = int(request["id"])
        except (ValueError, KeyError, TypeError, AttributeError):
            for fd in fds:
                os.close(fd)
            return
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            self._report({"t": "fork_failed", "id": request_id, "error": "no socket was passed"})
            return
        (job_fd,) = fds
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(job_fd)
            self._report({"t": "fork_failed", "id": request_id, "error": str(exc)})
            return
        if pid == 0:
            self._become_child(job_fd)
        os.close(job_fd)
        # Both parent and child set the group (the shell's trick): whichever runs first, the
        # group exists before the worker learns the pid and may signal it.
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        self.children.add(pid)
        self._report({"t": "forked", "id": request_id, "pid": pid})

    def _become_child(self, job_fd: int) -> NoReturn:
        code = 1
        try:
            with contextlib.suppress(OSError):
                os.setpgid(0, 0)
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.selector.close()
            self.requests.close()
            self.reports.close()
            os.close(self.wakeup_r)
            os.close(self.wakeup_w)
            code = _child.run(socket.socket(fileno=job_fd))
        except SystemExit as exc:  # the handler called sys.exit(): exit as Python would
            code = _exit_code(exc)
        except BaseException:  # noqa: BLE001 - a child must never return into the server loop
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _kill_all(self) -> None:
        for pid in self.children:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)  # noqa: T201 - what the interpreter does with sys.exit("text")
    return 1


def main(requests_fd: int, reports_fd: int) -> None:
    # The worker decides when the server ends (by going away); a SIGTERM or Ctrl-C sent to the
    # whole process group (systemd, a terminal) must not take it down under running children.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Everything imported so far (timecrisis, pydantic) is shared with every child. Frozen, the
    # children's garbage collector never walks it, so it is not copied page by page into each
    # child (the copy-on-write cost Python's gc.freeze documentation describes).
    gc.freeze()
    requests = socket.socket(fileno=requests_fd)
    reports = socket.socket(fileno=reports_fd)
    requests.setblocking(True)
    reports.setblocking(True)
    _Server(requests, reports).serve()
