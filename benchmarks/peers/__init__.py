"""Peers measured in the same run as timecrisis, each behind the `System` interface:
Procrastinate on the same PostgreSQL and SAQ on the local Redis. Each module is also the entry
point of its worker process (`python -m benchmarks.peers.<peer> worker`).

They are optional (`pip install -e ".[bench]"`): a peer whose package is missing is skipped
with a note, never a failure."""

from __future__ import annotations

import importlib.util


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
