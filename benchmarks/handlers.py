"""The benchmark's job handlers and payload schemas, in a module of their own: fork-mode
children import it, and it must stay cheap to import (no scheduler, no store)."""

from __future__ import annotations

import os
import time

from pydantic import BaseModel

STAMP_FILE_ENV = "TIMECRISIS_BENCH_STAMP_FILE"


class Empty(BaseModel):
    pass


class Stamp(BaseModel):
    n: int


async def noop(data: Empty, ctx: object) -> None:
    return None


def noop_sync(data: Empty, ctx: object) -> None:
    return None


_stamp_fd: int | None = None


def write_stamp(n: int) -> None:
    """Append `n` and the wall-clock time to the stamp file: the moment a W3 handler started.
    Wall clock (time.time), because the enqueuer is another process; one `write` of a short
    line with O_APPEND is atomic, so concurrent handlers never interleave."""
    global _stamp_fd
    if _stamp_fd is None:
        _stamp_fd = os.open(os.environ[STAMP_FILE_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(_stamp_fd, f"{n} {time.time():.6f}\n".encode())


async def stamp(data: Stamp, ctx: object) -> None:
    write_stamp(data.n)


def read_stamps(path: str) -> dict[int, float]:
    """n -> handler start time, from a stamp file (the first start of each n)."""
    started: dict[int, float] = {}
    try:
        with open(path) as lines:
            for line in lines:
                n, _, when = line.partition(" ")
                started.setdefault(int(n), float(when))
    except FileNotFoundError:
        pass
    return started
