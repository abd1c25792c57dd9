"""A handler module whose import starts a thread (as a metrics exporter or a pool would): the
fork server must never preload it. Used by test_preload only."""

from __future__ import annotations

import os
import threading

from pydantic import BaseModel

from timecrisis import JobContext

IMPORTED_BY = os.getpid()
threading.Thread(target=threading.Event().wait, name="started-at-import", daemon=True).start()


class Nothing(BaseModel):
    pass


def who_imported(data: Nothing, ctx: JobContext) -> list[int]:
    return [IMPORTED_BY, os.getpid()]
