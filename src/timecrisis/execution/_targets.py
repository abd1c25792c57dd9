"""Naming a handler across the process boundary: checked in the worker, loaded in the child.

A fork-mode child receives no Python objects from the worker, only names (JSON): the handler's
module and qualified name (or the path of a `fork_helper_path` file), and the schema's. The child
imports them the way the worker did, with the worker's `sys.path` and working directory. So the
worker refuses, at registration, what a child could not import: lambdas, functions defined inside
functions, bound methods and callable objects, a schema that is not reachable by its name, a
`__main__` that cannot be re-created (an interactive session, `python -c`, a package's
`__main__.py`), a helper file that is missing or has no top-level `handle`.

`__main__` is re-created in the child as multiprocessing's spawn does it: the script (or the
`-m` module) runs again under the name `__mp_main__`, so its `if __name__ == "__main__":` block
does not, and `sys.modules["__main__"]` points at the result.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import os
import runpy
import sys
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from timecrisis.errors import JobValidationError

if TYPE_CHECKING:
    from timecrisis.definitions import JobDefinition

HELPER_MODULE_NAME = "timecrisis_fork_helper"
"""The module name a `fork_helper_path` file is loaded under in the child."""


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A module-level object, by name."""

    module: str
    qualname: str

    def as_json(self) -> dict[str, str]:
        return {"module": self.module, "qualname": self.qualname}


@dataclass(frozen=True, slots=True)
class ForkTarget:
    """What a child runs for one job type: a handler by name or a helper file, and the schema."""

    job_type: str
    schema: ObjectRef
    handler: ObjectRef | None
    helper_path: str | None


# ---- worker side: checks at registration ----------------------------------------------------


def fork_target(definition: JobDefinition[Any]) -> ForkTarget:
    """Check that a child can load what `definition` runs; raise `JobValidationError` if not."""
    job_type = definition.type
    schema = _class_ref(definition.schema, job_type)
    if definition.fork_helper_path is not None:
        helper = _checked_helper_path(definition.fork_helper_path, job_type)
        return ForkTarget(job_type, schema, None, helper)
    handler = _function_ref(definition.handle, job_type)
    return ForkTarget(job_type, schema, handler, None)


def _function_ref(handle: object, job_type: str) -> ObjectRef:
    advice = "define it at module level, or name a file with fork_helper_path"
    if not inspect.isfunction(handle):
        raise JobValidationError(
            f"fork mode imports the handler of {job_type!r} by name in a child process, so it "
            f"must be a plain function; got {handle!r} ({advice})"
        )
    ref = ObjectRef(handle.__module__, handle.__qualname__)
    if "<" in ref.qualname:  # <locals>, <lambda>
        raise JobValidationError(
            f"the handler {ref.qualname!r} of {job_type!r} cannot be imported by a child process: "
            f"it is a lambda or is defined inside a function ({advice})"
        )
    _check_module(ref.module, f"the handler of {job_type!r}")
    return ref


def _class_ref(cls: type, job_type: str) -> ObjectRef:
    ref = ObjectRef(cls.__module__, cls.__qualname__)
    what = f"the schema {cls.__qualname__!r} of fork-mode job type {job_type!r}"
    _check_module(ref.module, what)
    module = sys.modules.get(ref.module)
    try:
        found = resolve_qualname(module, ref.qualname)
    except AttributeError:
        found = None
    if found is not cls:
        raise JobValidationError(
            f"{what} is not reachable as {ref.module}.{ref.qualname}, so a child process "
            "cannot import it; define it at module level"
        )
    return ref


def _check_module(name: str, what: str) -> None:
    if name == "__mp_main__":
        return  # a child re-creating the worker's __main__ (see load_object): nothing to check
    if name == "__main__":
        problem = main_module_problem()
        if problem is not None:
            raise JobValidationError(f"{what} is defined in __main__, and {problem}")
        return
    module = sys.modules.get(name)
    if module is None or getattr(module, "__spec__", None) is None:
        raise JobValidationError(
            f"{what} lives in module {name!r}, which a child process cannot import"
        )


def _checked_helper_path(path: str, job_type: str) -> str:
    absolute = os.path.abspath(os.path.expanduser(path))
    what = f"fork_helper_path {path!r} of job type {job_type!r}"
    if not os.path.isfile(absolute):
        raise JobValidationError(f"{what} is not a file")
    try:
        with open(absolute, "rb") as file:
            tree = ast.parse(file.read(), filename=absolute)
    except (OSError, SyntaxError, ValueError) as exc:
        raise JobValidationError(f"{what} cannot be parsed: {exc}") from exc
    # Parsed, not executed: the helper is meant to run in the child only (heavy imports, native
    # code); the worker must not pay for it or be exposed to it.
    if "handle" not in _top_level_names(tree.body):
        raise JobValidationError(f"{what} defines no top-level `handle(data, ctx)`")
    return absolute


def _top_level_names(body: list[ast.stmt]) -> set[str]:
    """Names bound at module level, looking into if/try/with blocks but not into defs."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.If | ast.Try | ast.With):
            nested = list(node.body) + list(getattr(node, "orelse", []))
            nested += list(getattr(node, "finalbody", []))
            for handler in getattr(node, "handlers", []):
                nested += handler.body
            names |= _top_level_names(nested)
    return names


def main_module_problem() -> str | None:
    """Why a child could not re-create this process's `__main__`, or None if it can."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None:
        if spec.name == "__main__" or spec.name.endswith(".__main__"):
            return (
                f"{spec.name} is a package's __main__.py, which a child process cannot re-run "
                "safely (it has no `if __name__ == '__main__':` guard to stop at); move the "
                "definitions to an importable module"
            )
        return None
    if getattr(main, "__file__", None) is None:
        return (
            "this __main__ (an interactive session or `python -c`) cannot be re-imported by "
            "a child process; move the definitions to an importable module"
        )
    return None


def main_module_hint() -> dict[str, str] | None:
    """How a child re-creates `__main__`: by module name (`python -m`) or by script path."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None:
        return {"name": spec.name}
    path = getattr(main, "__file__", None)
    return {"path": os.path.abspath(path)} if path else None


# ---- child side: loading ---------------------------------------------------------------------


def resolve_qualname(namespace: object, qualname: str) -> object:
    """`a.b.c` looked up attribute by attribute. Raises AttributeError."""
    return functools.reduce(getattr, qualname.split("."), namespace)


def load_object(ref: dict[str, str], main_hint: dict[str, str] | None) -> object:
    """Import `ref["module"]` (re-creating `__main__` if needed) and look up `ref["qualname"]`."""
    name = ref["module"]
    module = _main_module(main_hint) if name == "__main__" else importlib.import_module(name)
    return resolve_qualname(module, ref["qualname"])


_recreated_main: types.ModuleType | None = None


def is_loaded(ref: dict[str, str]) -> bool:
    """Whether `load_object(ref, ...)` would find its module already imported."""
    if ref["module"] == "__main__":
        return _recreated_main is not None
    return ref["module"] in sys.modules


def _main_module(hint: dict[str, str] | None) -> types.ModuleType:
    # Not `sys.modules["__mp_main__"]` as a cache: importing multiprocessing aliases it to the
    # child's own `__main__` (the fork server's `-c`), which has none of the worker's names.
    global _recreated_main
    if _recreated_main is not None:
        return _recreated_main
    if hint is None:
        raise ImportError("the worker's __main__ cannot be re-created in a child process")
    module = types.ModuleType("__mp_main__")
    if "name" in hint:
        content = runpy.run_module(hint["name"], run_name="__mp_main__", alter_sys=True)
    else:
        content = runpy.run_path(hint["path"], run_name="__mp_main__")
    module.__dict__.update(content)
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module
    _recreated_main = module
    return module


def load_helper(path: str) -> object:
    """Execute the helper file as module `timecrisis_fork_helper` and return its `handle`."""
    spec = importlib.util.spec_from_file_location(HELPER_MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as an import would be: dataclasses and pickling look it up.
    sys.modules[HELPER_MODULE_NAME] = module
    spec.loader.exec_module(module)
    handle = getattr(module, "handle", None)
    if not callable(handle):
        raise ImportError(f"{path!r} defines no callable `handle(data, ctx)`")
    return handle
