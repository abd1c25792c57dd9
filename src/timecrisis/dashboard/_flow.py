"""The "Pause and resume" panel of the Metrics page: every job type and queue the dashboard
knows of, its state, and the button that flips it (docs/flow-control.md)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FlowRow:
    name: str
    kind: str  # "type", "queue", "type and queue" (one pause covers both), or "name"
    paused: bool


def flow_rows(types: Iterable[str], queues: Iterable[str], paused: Iterable[str]) -> list[FlowRow]:
    """One row per name: the registered and stored job types, the queues they use or jobs sit
    in, and any paused name neither knows (paused ahead of its first job, say), sorted. A name
    that is both a type and a queue gets one row: `pause(name)` matches both."""
    type_names, queue_names, paused_names = set(types), set(queues), set(paused)
    rows = []
    for name in sorted(type_names | queue_names | paused_names):
        if name in type_names and name in queue_names:
            kind = "type and queue"
        elif name in type_names:
            kind = "type"
        elif name in queue_names:
            kind = "queue"
        else:
            kind = "name"
        rows.append(FlowRow(name, kind, name in paused_names))
    return rows
