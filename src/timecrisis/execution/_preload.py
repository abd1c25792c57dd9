"""Preloading: the fork server imports a job type's handler and schema once, for every child.

Without it every child imports the handler's module itself (for a module with one pydantic
model, about 2 ms of CPU and a few hundred pages copied on write per job; for a handler in
`__main__`, re-running the whole script). With it a child finds the module already in memory.

What may be preloaded is decided by a child, never guessed: the first child of a job type that
imports its module (a module-level handler, not a `fork_helper_path` file, which is meant to be
loaded in children only) compares its threads and open file descriptors before and after the
import. If the import left them unchanged it says so (`loaded_cleanly`), and the worker asks the
fork server to import the same names (`preload`, once per job type and server). So the server
only ever imports what a child has already imported to the end without crashing or hanging,
and stays free of threads and connections, which its children would inherit broken. A module
whose import starts a thread (a thread pool, a metrics exporter) or opens a connection or file
stays imported by each child, as before.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
from typing import Any

from timecrisis.execution._targets import is_loaded, load_object


def already_loaded(start: dict[str, Any]) -> bool:
    """Whether this child inherited the handler and schema of its start message."""
    return all(is_loaded(start[key]) for key in ("handler", "schema"))


def process_resources() -> tuple[int, int]:
    """(threads, open file descriptors) of this process: an import that changes them is not
    preloaded."""
    if os.path.isdir("/proc/self/task"):
        threads = len(os.listdir("/proc/self/task"))  # native threads too (BLAS pools...)
    else:
        threads = threading.active_count()
    return threads, len(os.listdir("/dev/fd"))


def preload_request(start: dict[str, Any]) -> dict[str, Any]:
    """What the worker sends the fork server after a child's `loaded_cleanly`."""
    return {
        "t": "preload",
        "sys_path": start["sys_path"],
        "cwd": start["cwd"],
        "main": start["main"],
        "objects": [start["handler"], start["schema"]],
    }


def preload(request: dict[str, Any]) -> None:
    """In the fork server: import what `request` names. Best effort: on any failure the
    children go on importing it themselves."""
    # Even a SystemExit or KeyboardInterrupt raised by the import: the server must go on.
    with contextlib.suppress(BaseException):
        os.chdir(request["cwd"])
        sys.path[:] = request["sys_path"]
        for ref in request["objects"]:
            load_object(ref, request["main"])
    # Like the server's own imports: kept out of the children's garbage collections.
    gc.freeze()
