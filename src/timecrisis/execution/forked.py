"""Fork mode: run a handler in a child process. (Being built: see the fork-mode issue.)"""

from __future__ import annotations

from typing import Any

from timecrisis.definitions import JobDefinition
from timecrisis.errors import JobValidationError
from timecrisis.loops.runtime import Runtime


def ensure_fork_runner(runtime: Runtime, definition: JobDefinition[Any]) -> None:
    raise JobValidationError(
        f"job type {definition.type!r} asks for fork_mode, which this version does not support yet"
    )
