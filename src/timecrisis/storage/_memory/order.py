"""Jobs in enqueue order, for `list_jobs`' newest-first keyset paging.

An append-only list of (seq, id): appends come in sequence order, so it stays sorted and a
cursor is found by bisection. Deleted jobs leave tombstones that are skipped, and the list is
compacted once they outnumber the live entries, so a purge costs amortised O(1) per job
instead of an O(n) shift per deletion.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

_MIN_COMPACTION = 1024


class EnqueueOrder:
    def __init__(self) -> None:
        self._entries: list[tuple[int, str]] = []
        # Tombstones by seq, not by id: an id freed by a purge may be inserted again.
        self._removed: set[int] = set()

    def append(self, seq: int, job_id: str) -> None:
        self._entries.append((seq, job_id))

    def remove(self, seq: int) -> None:
        self._removed.add(seq)
        if len(self._removed) > max(_MIN_COMPACTION, len(self._entries) // 2):
            self._entries = [e for e in self._entries if e[0] not in self._removed]
            self._removed.clear()

    def newest_first(self, before_seq: int | None = None) -> Iterator[str]:
        """Job ids, newest first, only those enqueued before `before_seq` when it is given."""
        end = len(self._entries)
        if before_seq is not None:
            end = bisect_left(self._entries, before_seq, key=lambda entry: entry[0])
        for index in range(end - 1, -1, -1):
            seq, job_id = self._entries[index]
            if seq not in self._removed:
                yield job_id
