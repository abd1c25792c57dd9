from __future__ import annotations

import pytest

from tests.otel.support import Traced, install

# `store` and `make_scheduler`: every store, fast intervals.
from tests.scheduler.conftest import make_scheduler, store  # noqa: F401


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Traced:
    return install(monkeypatch)
