"""The PostgreSQL store: many nodes on one database (see `store.py`)."""

from timecrisis.storage.postgres.store import PostgresJobStorage

__all__ = ["PostgresJobStorage"]
