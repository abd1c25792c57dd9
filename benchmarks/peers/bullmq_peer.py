"""BullMQ (Node) on the local Redis, queue `tcbench` under the key prefix `tcbench-bullmq`
(keys `tcbench-bullmq:tcbench:*`; only those are ever deleted: Redis is shared).

BullMQ is a Node library, so its client and worker are `bullmq/bench.mjs` (the version pinned
by `bullmq/package.json` and `package-lock.json`, installed by `npm ci` into the git-ignored
`bullmq/node_modules` when missing or older than the lock file). The Python side drives it
through the same `System` interface as the other peers: the worker is `node bench.mjs worker`
(concurrency 10, every other option BullMQ's default), the W2/W4 prefill is one `node bench.mjs
add` per batch (untimed), and Redis is asked directly whether anything is left. The timed
enqueues of W1 and W3 run inside one Node process (`bench.mjs w1` / `w3`), so no process start
or pipe is ever timed: `queue.add` one at a time, `queue.addBulk` for a batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, cast

import redis

from benchmarks.config import REDIS_URL, Counts

DIR = Path(__file__).resolve().parent / "bullmq"
SCRIPT = DIR / "bench.mjs"
PREFIX = "tcbench-bullmq"
QUEUE = "tcbench"
_KEY = f"{PREFIX}:{QUEUE}"
_INSTALL_TIMEOUT = 300.0
_CLIENT_TIMEOUT = 300.0


def unavailable() -> str | None:
    """Why the BullMQ peer cannot run here (None: it can), after installing its pinned
    packages if they are missing or older than the lock file."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "node/npm not found"
    installed = DIR / "node_modules" / ".package-lock.json"  # written by every npm ci
    lock = DIR / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return None
    try:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=DIR,
            check=True,
            capture_output=True,
            timeout=_INSTALL_TIMEOUT,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        stderr = getattr(exc, "stderr", b"") or b""
        tail = " | ".join(stderr.decode(errors="replace").strip().splitlines()[-3:])
        return f"`npm ci` in {DIR} failed: {exc} {tail}".strip()
    return None


def _node_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TIMECRISIS_BENCH_REDIS_URL"] = REDIS_URL
    env["TIMECRISIS_BENCH_BULLMQ_PREFIX"] = PREFIX
    return env


class BullMQ:
    name = "bullmq"
    in_process = False

    def __init__(self) -> None:
        self._sync = redis.Redis.from_url(REDIS_URL)

    async def _client(self, *args: str, stdin: bytes = b"") -> dict[str, Any]:
        """Run `node bench.mjs ARGS...` and return the JSON it printed last."""
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(SCRIPT),
            *args,
            cwd=DIR,
            env=_node_env(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), _CLIENT_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            tail = " | ".join(err.decode(errors="replace").strip().splitlines()[-5:])
            raise RuntimeError(f"node bench.mjs {args[0]} exited {proc.returncode}: {tail}")
        return cast(dict[str, Any], json.loads(out.decode().strip().splitlines()[-1]))

    async def reset(self) -> None:
        await self.discard()

    async def discard(self) -> None:
        keys = list(self._sync.scan_iter(match=f"{PREFIX}:*", count=1000))
        for start in range(0, len(keys), 1000):
            self._sync.delete(*keys[start : start + 1000])

    async def enqueue_one(self, job_type: str, payload: dict[str, Any]) -> None:
        await self.enqueue_many(job_type, [payload])

    async def enqueue_many(self, job_type: str, payloads: list[dict[str, Any]]) -> None:
        await self._client("add", job_type, stdin=json.dumps(payloads).encode())

    async def w1(self, counts: Counts) -> dict[str, Any]:
        return await self._client("w1", str(counts.w1_jobs))

    async def w3_enqueues(self, counts: Counts, warmups: int, stamps: Path) -> dict[int, float]:
        gap_ms = str(counts.w3_gap * 1000)
        result = await self._client(
            "w3", str(counts.w3_enqueues), gap_ms, str(warmups), str(stamps)
        )
        return {int(n): float(t) for n, t in result["returned"].items()}

    def worker_command(self, fork: bool) -> list[str]:
        return ["node", str(SCRIPT), "worker"]

    def worker_env(self) -> dict[str, str]:
        return _node_env()

    async def settle(self) -> None:
        return None

    async def outstanding(self) -> bool:
        pipe = self._sync.pipeline(transaction=False)
        for kind in ("wait", "active", "paused"):
            pipe.llen(f"{_KEY}:{kind}")
        for kind in ("prioritized", "delayed"):
            pipe.zcard(f"{_KEY}:{kind}")
        return any(cast(list[int], pipe.execute()))

    async def finished(self) -> int:
        return cast(int, self._sync.zcard(f"{_KEY}:completed"))

    async def close(self) -> None:
        self._sync.close()  # the next command reconnects
