"""The SQLite store: the embedded default (see `store.py`)."""

from timecrisis.storage.sqlite.store import SQLiteJobStorage

__all__ = ["SQLiteJobStorage"]
