"""Logger plumbing. The library never prints: it logs to `logging.getLogger("timecrisis")` or
to the logger the user passes (a stdlib logger or any object with debug/info/warning/error)."""

from __future__ import annotations

import logging
from typing import Any

DEFAULT_LOGGER_NAME = "timecrisis"


class _DuckLoggerAdapter(logging.Logger):
    """Wraps an object that only has debug/info/warning/error so the library can use the
    stdlib `Logger` interface everywhere (log levels, `exc_info`, `extra`)."""

    def __init__(self, target: Any) -> None:
        super().__init__(DEFAULT_LOGGER_NAME)
        self._target = target

    def _log(  # type: ignore[override]
        self, level: int, msg: object, args: Any, exc_info: Any = None, **kwargs: Any
    ) -> None:
        text = str(msg) % args if args else str(msg)
        if level >= logging.ERROR:
            self._target.error(text)
        elif level >= logging.WARNING:
            self._target.warning(text)
        elif level >= logging.INFO:
            self._target.info(text)
        else:
            self._target.debug(text)

    def isEnabledFor(self, level: int) -> bool:
        return True


def resolve_logger(logger: object | None) -> logging.Logger:
    if logger is None:
        return logging.getLogger(DEFAULT_LOGGER_NAME)
    if isinstance(logger, logging.Logger):
        return logger
    for method in ("debug", "info", "warning", "error"):
        if not callable(getattr(logger, method, None)):
            raise TypeError(f"logger must be a logging.Logger or have .{method}(); got {logger!r}")
    return _DuckLoggerAdapter(logger)


def child(logger: logging.Logger, suffix: str) -> logging.Logger:
    """A child of a stdlib logger; duck-typed loggers are shared as they are."""
    if isinstance(logger, _DuckLoggerAdapter):
        return logger
    return logger.getChild(suffix)
