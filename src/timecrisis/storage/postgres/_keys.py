"""Advisory lock keys: 64-bit integers derived from names, the same on every node.

The keys are computed here rather than with `hashtext()` in SQL so the claim can sort them: every
claimer takes its per-type locks in ascending key order, which rules deadlocks out. A collision
between two names only makes them share a lock (more waiting, never less safety).
"""

from __future__ import annotations

import hashlib


def advisory_key(purpose: str, schema: str, name: str = "") -> int:
    """The lock key for `purpose` ("migrate", "type") in `schema`, for `name` if any."""
    digest = hashlib.blake2b(
        f"timecrisis\0{purpose}\0{schema}\0{name}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)
