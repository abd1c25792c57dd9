"""PostgreSQL's own share of the hot path: `complete_and_claim` under `EXPLAIN ANALYZE`.

    python -m benchmarks.cycle_explain [--batch 25] [--calls 200]

The loop of `benchmarks.cycle` (each call completes what the previous one claimed and claims as
many again), each call run as `EXPLAIN (ANALYZE, WAL)` on a connection of its own. Prints the
median execution time (the server's work, without the round trip, the commit's WAL flush or
the client) and the WAL a call writes: the growth of `pg_current_wal_insert_lsn()` around it,
its minimum and median (the server's WAL position moves with every database on it, so the
minimum is the figure that other sessions cannot inflate).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from datetime import timedelta
from typing import Any

import psycopg

from benchmarks.app import NOOP
from benchmarks.config import POSTGRES_URL
from benchmarks.systems import Postgres
from benchmarks.w2_drain import prefill
from timecrisis.storage._queries import load_queries
from timecrisis.storage.postgres._sql import render

_Held = list[tuple[str, str, str]]  # id, lock token, run id of each claimed job


def _params(held: _Held, batch: int) -> dict[str, Any]:
    return {
        "now": None,
        "ids": [h[0] for h in held],
        "tokens": [h[1] for h in held],
        "runs": [h[2] for h in held],
        "results": [None] * len(held),
        "canceled": [False] * len(held),
        "limit": batch,
        "types": [NOOP],
        "worker": "cycle-explain",
        "ttl": timedelta(minutes=5),
    }


async def _scalar(conn: psycopg.AsyncConnection[Any], query: str) -> Any:
    cur = await conn.execute(query.encode())
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def run(batch: int, calls: int) -> str:
    system = Postgres()
    await system.reset()
    await prefill(system, NOOP, batch * (calls + 1))
    await system.settle()
    await system.close()
    statement = b"EXPLAIN (ANALYZE, WAL, FORMAT JSON) " + render(
        load_queries("timecrisis.storage.postgres")["complete_and_claim"], system.schema
    )
    held_query = f'SELECT id, lock_token, run_id FROM "{system.schema}".jobs'
    held_query += " WHERE status = 'running'"
    executions: list[float] = []
    wal: list[float] = []
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        held: _Held = []
        for _ in range(calls + 1):
            before = await _scalar(conn, "SELECT pg_current_wal_insert_lsn()")
            cur = await conn.execute(statement, _params(held, batch))
            row = await cur.fetchone()
            assert row is not None
            written = await _scalar(
                conn, f"SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '{before}')"
            )
            if held:  # the first call only claims
                executions.append(float(row[0][0]["Execution Time"]))
                wal.append(float(written))
            cur = await conn.execute(held_query.encode())
            held = [(r[0], r[1], r[2]) for r in await cur.fetchall()]
    return (
        f"batch {batch:>3}: execution median {statistics.median(executions):.2f} ms; WAL per "
        f"call min {min(wal):,.0f} / median {statistics.median(wal):,.0f} bytes "
        f"({len(executions)} calls)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=25, help="completions and claims per call")
    parser.add_argument("--calls", type=int, default=200, help="calls measured")
    args = parser.parse_args()
    print(asyncio.run(run(args.batch, args.calls)))


if __name__ == "__main__":
    main()
