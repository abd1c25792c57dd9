"""A handler module whose import is clean (no thread, no open file): the fork server may
preload it. Used by test_preload only, so that nothing else preloads it first."""

from __future__ import annotations

import os

from pydantic import BaseModel

from timecrisis import JobContext

IMPORTED_BY = os.getpid()


class Nothing(BaseModel):
    pass


def who_imported(data: Nothing, ctx: JobContext) -> list[int]:
    return [IMPORTED_BY, os.getpid()]
