"""Peers measured in the same run as timecrisis, each behind the `System` interface:
Procrastinate and pgqueuer on the same PostgreSQL, SAQ and BullMQ (Node) on the local Redis. Each
Python peer's module is also the entry point of its worker process (`python -m
benchmarks.peers.<peer> worker`); BullMQ's worker and client are `bullmq/bench.mjs`.

They are optional (`pip install -e ".[bench]"`; BullMQ needs `node` and `npm`): a peer whose
package is missing is skipped with a note, never a failure."""

from __future__ import annotations

import importlib.util


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
