"""Finding the scheduler a `timecrisis worker TARGET` runs.

TARGET is `package.module:attribute` (imported with the working directory on `sys.path`, as
celery and uvicorn do) or `path/to/file.py:attribute`. A file is imported under its real dotted
name, found by walking up through the folders that hold an `__init__.py` (pytest's "prepend"
rule): relative imports inside the file keep working, and a fork-mode child can import the
handler by the same name.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path

import click

from timecrisis.cli._errors import CommandError, describe
from timecrisis.scheduler import JobScheduler

TARGET_FORMS = "MODULE:ATTRIBUTE or path/to/file.py:ATTRIBUTE"
_OWN_FILES = frozenset({__file__, importlib.__file__})


def load_scheduler(target: str) -> JobScheduler:
    """Import TARGET and return its `JobScheduler`. A TARGET that names nothing is a usage
    error (exit 2); a module that raises while being imported is a failure (exit 1)."""
    location, sep, attribute = target.rpartition(":")
    if not sep or not location or not _is_dotted_name(attribute):
        raise _bad_target(f"expected {TARGET_FORMS}, got {target!r}")
    if location.endswith(".py") or "/" in location or os.sep in location:
        module_name = _prepare_file(Path(location))
    else:
        if not _is_dotted_name(location):
            raise _bad_target(f"{location!r} is not a module name (expected {TARGET_FORMS})")
        module_name = location
        _prepend_to_path(Path.cwd())
    module = _import(module_name)
    found: object = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise _bad_target(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(found, JobScheduler):
        raise _bad_target(
            f"{module_name}:{attribute} is a {type(found).__name__}, not a JobScheduler"
        )
    return found


def _is_dotted_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _bad_target(message: str) -> click.BadParameter:
    return click.BadParameter(message, param_hint="'TARGET'")


def _prepare_file(path: Path) -> str:
    if path.suffix != ".py":
        raise _bad_target(f"{str(path)!r} is not a Python file (expected {TARGET_FORMS})")
    if not path.is_file():
        raise _bad_target(f"no such file: {path}")
    path = path.resolve()
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        parts.insert(0, folder.name)
        folder = folder.parent
    if not all(part.isidentifier() for part in parts):
        raise _bad_target(f"{path} cannot be imported: {'.'.join(parts)!r} is not a module name")
    _prepend_to_path(folder)
    return ".".join(parts)


def _prepend_to_path(folder: Path) -> None:
    entry = str(folder)
    if entry not in sys.path:
        sys.path.insert(0, entry)


def _import(module_name: str) -> object:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing and (module_name == missing or module_name.startswith(f"{missing}.")):
            raise _bad_target(
                f"cannot import {module_name!r}: no module named {missing!r}"
            ) from None
        raise CommandError(_import_failure(module_name, error)) from None
    except Exception as error:  # noqa: BLE001 - any error in the user's module is reported
        raise CommandError(_import_failure(module_name, error)) from None


def _import_failure(module_name: str, error: BaseException) -> str:
    # Point at the user's line, not at importlib's machinery or at this module.
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not frame.filename.startswith("<") and frame.filename not in _OWN_FILES
    ]
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"importing {module_name!r} failed: {describe(error)}{where}"
