"""SAQ on the local Redis, queue `tcbench` (keys `saq:tcbench:*`, `saq:job:tcbench:*`).

Worker: `saq.Worker(queue, functions, concurrency=10)` with its defaults. Enqueue:
`queue.enqueue` one at a time; SAQ has no batch insert, so a batch is `asyncio.gather` of
single enqueues (SAQ pipelines up to 20 of them at once)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any, cast

import redis
from saq import Queue, Worker

from benchmarks.config import CONCURRENCY, REDIS_URL
from benchmarks.handlers import write_stamp
from benchmarks.systems import python_env

QUEUE = "tcbench"


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def stamp(ctx: dict[str, Any], *, n: int) -> None:
    write_stamp(n)


def _keys(client: redis.Redis) -> list[bytes]:
    found: list[bytes] = []
    for pattern in (f"saq:{QUEUE}:*", f"saq:job:{QUEUE}:*", f"saq:abort:{QUEUE}:*"):
        found.extend(client.scan_iter(match=pattern, count=1000))
    return found


class Saq:
    name = "saq"
    in_process = False

    def __init__(self) -> None:
        self._queue: Queue | None = None
        self._sync = redis.Redis.from_url(REDIS_URL)

    async def _q(self) -> Queue:
        if self._queue is None:
            self._queue = Queue.from_url(REDIS_URL, name=QUEUE)
            await self._queue.connect()
        return self._queue

    async def reset(self) -> None:
        await self.discard()

    async def discard(self) -> None:
        keys = _keys(self._sync)
        for start in range(0, len(keys), 1000):
            self._sync.delete(*keys[start : start + 1000])

    async def enqueue_one(self, job_type: str, payload: dict[str, Any]) -> None:
        await (await self._q()).enqueue(job_type, **payload)

    async def enqueue_many(self, job_type: str, payloads: list[dict[str, Any]]) -> None:
        queue = await self._q()
        await asyncio.gather(*(queue.enqueue(job_type, **payload) for payload in payloads))

    def worker_command(self, fork: bool) -> list[str]:
        return [sys.executable, "-m", "benchmarks.peers.saq_peer", "worker"]

    def worker_env(self) -> dict[str, str]:
        return python_env()

    async def settle(self) -> None:
        return None

    async def outstanding(self) -> bool:
        return cast(int, self._sync.zcard(f"saq:{QUEUE}:incomplete")) > 0

    async def finished(self) -> int:
        keys = list(self._sync.scan_iter(match=f"saq:job:{QUEUE}:*", count=1000))
        done = 0
        for start in range(0, len(keys), 1000):
            for raw in cast(list[bytes | None], self._sync.mget(keys[start : start + 1000])):
                if raw is not None and json.loads(raw).get("status") == "complete":
                    done += 1
        return done

    async def close(self) -> None:
        if self._queue is not None:
            await self._queue.disconnect()
            self._queue = None
        self._sync.close()


async def _work() -> None:
    queue = Queue.from_url(REDIS_URL, name=QUEUE)
    # SAQ types its function list loosely enough that mypy cannot match ours to it.
    functions: Any = [noop, stamp]
    worker: Worker[Any] = Worker(queue, functions=functions, concurrency=CONCURRENCY)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    task = asyncio.create_task(worker.start())
    await stopping.wait()
    await worker.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await queue.disconnect()


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    asyncio.run(_work())
