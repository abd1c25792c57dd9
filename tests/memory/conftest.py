"""Fixtures of the in-memory store's own tests: the conformance suite's fixed clock."""

from __future__ import annotations

from tests.storage.conftest import clock as clock
