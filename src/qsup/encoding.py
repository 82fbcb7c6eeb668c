"""How a task is named and its arguments stored: import paths and JSON, checked at enqueue."""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qsup.errors import ConfigError, TaskDefinitionError

if TYPE_CHECKING:
    from qsup.settings import Config


@functools.lru_cache(maxsize=4096)
def task_path(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of a module-level function, refusing what a worker cannot import.
    Cached: batch enqueues check each function once, not once per row."""
    target = getattr(fn, "__qsup_task__", fn)
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if not module or not qualname or not callable(target):
        raise TaskDefinitionError(f"{fn!r} is not a function that can be enqueued")
    if qualname == "<lambda>" or "<lambda>" in qualname:
        raise TaskDefinitionError("lambdas cannot be tasks: define a module-level function")
    if "<locals>" in qualname:
        raise TaskDefinitionError(
            f"{qualname} is defined inside a function: tasks must be module-level functions"
        )
    if module == "__main__":
        raise TaskDefinitionError(
            f"{qualname} is defined in __main__: move it to an importable module"
        )
    path = f"{module}:{qualname}"
    try:
        found = resolve_task(path)
    except TaskDefinitionError:
        raise TaskDefinitionError(f"{path} cannot be imported back by a worker") from None
    if getattr(found, "__qsup_task__", found) is not target:
        raise TaskDefinitionError(f"{path} does not name the function given")
    return path


def import_task_modules(config: Config) -> None:
    """Import what workers will run, before forking, so they start warm."""
    if os.getcwd() not in sys.path:  # like gunicorn: the project directory is importable
        sys.path.insert(0, os.getcwd())
    for module in config.imports:
        try:
            importlib.import_module(module)
        except Exception as exc:  # any error in user code at import time
            source = config.sources.get("imports", "default")
            raise ConfigError(
                f"imports: cannot import {module!r} ({source}): {type(exc).__name__}: {exc}"
            ) from None


def resolve_task(path: str) -> Callable[..., Any]:
    """Import ``module:qualname``; errors say what is missing."""
    module_name, sep, qualname = path.partition(":")
    if not sep or not module_name or not qualname:
        raise TaskDefinitionError(f"{path!r} is not a task path of the form module:function")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise TaskDefinitionError(f"cannot import module {module_name!r}: {exc}") from None
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TaskDefinitionError(f"module {module_name!r} has no {qualname!r}") from None
    if not callable(getattr(obj, "__qsup_task__", obj)):  # a Django task: see qsup.django
        raise TaskDefinitionError(f"{path} is not callable")
    return obj  # type: ignore[no-any-return]


def _check_value(value: Any, what: str) -> None:
    """Refuse what JSON would silently change (``{1: "x"}`` becomes ``{"1": "x"}``) and what
    PostgreSQL's jsonb cannot store (NUL characters)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise TaskDefinitionError(f"{what} contain a NUL character, which jsonb cannot store")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TaskDefinitionError(
                    f"{what} is not JSON-serialisable: dict key {key!r} is not a string"
                )
            _check_value(key, what)
            _check_value(item, what)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_value(item, what)


# One encoder for every call: json.dumps with options builds a new one each time.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def to_json(value: Any, what: str) -> str:
    """Strict JSON (no NaN, no arbitrary objects, string keys only); ``what`` names the value
    in the error."""
    try:
        _check_value(value, what)
    except RecursionError:
        raise TaskDefinitionError(f"{what} is nested too deeply to encode") from None
    try:
        text = _ENCODER.encode(value)
        text.encode()  # lone surrogates cannot become UTF-8, nor be stored
        return text
    except UnicodeEncodeError:
        raise TaskDefinitionError(f"{what} contain text that is not valid Unicode") from None
    except (TypeError, ValueError) as exc:
        raise TaskDefinitionError(f"{what} is not JSON-serialisable: {exc}") from None
    except RecursionError:
        raise TaskDefinitionError(f"{what} is nested too deeply to encode") from None


def encode_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> tuple[str, str]:
    """JSON for a task's positional and keyword arguments, within ``limit`` bytes together."""
    args_json = to_json(list(args), "the task's arguments") if args else "[]"
    kwargs_json = to_json(kwargs, "the task's keyword arguments") if kwargs else "{}"
    size = len(args_json) + len(kwargs_json)
    if size * 4 > limit:  # characters undercount bytes by at most 4x: measure only if it matters
        size = len(args_json.encode()) + len(kwargs_json.encode())
    if size > limit:
        raise TaskDefinitionError(
            f"the task's arguments take {size} bytes encoded, more than the limit of {limit}"
            " (QUEUE_MAX_ARGS_BYTES)"
        )
    return args_json, kwargs_json
