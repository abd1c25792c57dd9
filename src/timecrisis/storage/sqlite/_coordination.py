"""Distributed locks (the leader lease) and worker registrations for the SQLite store.

Each function is the body of one transaction. A lock decision (free? expired? whose token?)
reads and writes under one `BEGIN IMMEDIATE`, so two processes racing for the leader lock are
serialised by SQLite's write lock and exactly one wins.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from timecrisis.models import WorkerInfo
from timecrisis.storage._common import new_id
from timecrisis.storage._queries import load_queries
from timecrisis.storage.base import DEFAULT_WORKER_TTL, LockInfo
from timecrisis.storage.sqlite._rows import from_us, json_array, to_us, worker_from_row

Q = load_queries("timecrisis.storage.sqlite")

_MICROSECOND = timedelta(microseconds=1)

# ---- locks -----------------------------------------------------------------------------------


def acquire_lock(
    conn: sqlite3.Connection, name: str, owner: str, ttl: timedelta, now: datetime
) -> str | None:
    """Not re-entrant: a live lock is refused whoever asks, its owner included."""
    now_us = to_us(now)
    row = conn.execute(Q["acquire_lock_expiry"], (name,)).fetchone()
    if row is not None and row[0] > now_us:
        return None
    token = new_id()
    conn.execute(
        Q["acquire_lock"],
        (name, owner, token, now_us, to_us(now + ttl)),
    )
    return token


def renew_lock(
    conn: sqlite3.Connection, name: str, token: str, ttl: timedelta, now: datetime
) -> bool:
    cursor = conn.execute(Q["renew_lock"], (to_us(now + ttl), name, token, to_us(now)))
    return cursor.rowcount == 1


def release_lock(conn: sqlite3.Connection, name: str, token: str) -> bool:
    cursor = conn.execute(Q["release_lock"], (name, token))
    return cursor.rowcount == 1


def get_lock(conn: sqlite3.Connection, name: str, now: datetime) -> LockInfo | None:
    row = conn.execute(Q["get_lock"], (name, to_us(now))).fetchone()
    return None if row is None else LockInfo(row[0], row[1], from_us(row[2]), from_us(row[3]))


# ---- workers ---------------------------------------------------------------------------------


def heartbeat_worker(
    conn: sqlite3.Connection,
    name: str,
    running: int,
    is_leader: bool,
    ttl: timedelta,
    now: datetime,
) -> None:
    """An upsert: a worker whose row was pruned while it was alive registers again. The worker
    writes its own deadline (now + its `ttl`)."""
    now_us = to_us(now)
    conn.execute(
        Q["heartbeat_worker"],
        (name, now_us, now_us, is_leader, running, to_us(now + ttl)),
    )


def remove_worker(conn: sqlite3.Connection, name: str) -> None:
    conn.execute(Q["remove_worker"], (name,))


def list_workers(conn: sqlite3.Connection) -> list[WorkerInfo]:
    """`running` is counted from the jobs table now, not the count the worker sent with its last
    heartbeat (up to a heartbeat interval old). One statement: the running jobs (few, one
    equality range of an index) are grouped once and joined to the roster."""
    rows = conn.execute(Q["list_workers"])
    return [worker_from_row(row) for row in rows]


def prune_workers(conn: sqlite3.Connection, now: datetime) -> list[str]:
    """Each worker's own deadline decides; a row from before workers wrote one (NULL) gets the
    old default, last_heartbeat + DEFAULT_WORKER_TTL."""
    now_us = to_us(now)
    names = [
        row[0]
        for row in conn.execute(
            Q["prune_workers"],
            (DEFAULT_WORKER_TTL // _MICROSECOND, now_us),
        )
    ]
    # End the leases of their jobs now (an earlier expiry is kept), so the reaper recovers
    # them at its next pass instead of waiting out the TTL.
    if names:
        conn.execute(Q["prune_workers_end_leases"], (now_us, now_us, json_array(names)))
    return sorted(names)


# ---- flow control: pauses (docs/flow-control.md) ----------------------------------------------


def pause(conn: sqlite3.Connection, name: str, now: datetime) -> bool:
    return conn.execute(Q["pause"], (name, to_us(now))).rowcount == 1


def resume(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute(Q["resume"], (name,)).rowcount == 1


def list_paused(conn: sqlite3.Connection) -> list[str]:
    return [name for (name,) in conn.execute(Q["list_paused"])]
