"""Storage backends, the contract they share, and `storage_from_url`."""

from __future__ import annotations

from timecrisis.storage.base import JobStorage
from timecrisis.storage.urls import storage_from_url

__all__ = ["JobStorage", "storage_from_url"]
