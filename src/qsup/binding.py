"""Does a call fit its function's signature? Checked once, at enqueue, by every path
(``Queue.build``: add_task, add_tasks, children, FastAPI, ``qsup enqueue``, ``POST
/api/tasks``, schedules, workflow steps), so a wrong call is refused where it is made rather
than failing in a worker later; the worker uses it too, to tell a wrong call from a TypeError
raised inside the task.

``inspect.Signature.bind`` costs 2-4 us a call; a function's :class:`_Shape` is computed once
and checks a call in well under 1 us. Only a call the shape cannot accept goes to ``bind``,
for its verdict and its message.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from qsup.errors import TaskDefinitionError

_P = inspect.Parameter
_MANY = 1 << 30  # what ``*args`` takes


class _Shape:
    """What a signature accepts, in the terms a call is checked in (slots: read per call)."""

    __slots__ = ("keywords", "least", "most", "positional", "positional_only", "required",
                 "signature")  # fmt: skip

    def __init__(self, signature: inspect.Signature) -> None:
        params = list(signature.parameters.values())
        positional = [p for p in params if p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD)]
        by_keyword = [
            p.name for p in params if p.kind in (_P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY)
        ]
        self.signature = signature
        self.least = sum(p.default is _P.empty for p in positional)  # required positionals
        self.most = _MANY if any(p.kind is _P.VAR_POSITIONAL for p in params) else len(positional)
        self.positional = tuple(p.name for p in positional)  # in order
        self.positional_only = sum(p.kind is _P.POSITIONAL_ONLY for p in positional)
        # the names a keyword may have (None: **kwargs takes any)
        self.keywords = (
            None if any(p.kind is _P.VAR_KEYWORD for p in params) else frozenset(by_keyword)
        )
        # keyword-only parameters without a default
        self.required = frozenset(
            p.name for p in params if p.kind is _P.KEYWORD_ONLY and p.default is _P.empty
        )


@functools.lru_cache(maxsize=4096)
def _shape(fn: Callable[..., Any]) -> _Shape | None:
    """The function's shape, or None when it has no signature to check against (some
    builtins): the worker's call decides then."""
    try:
        signature = inspect.signature(getattr(fn, "__qsup_task__", fn))
    except (TypeError, ValueError):
        return None
    return _Shape(signature)


def _fits(shape: _Shape, count: int, kwargs: Mapping[str, Any]) -> bool:
    """Whether the call binds (as Python calls it: ``bind`` refuses a positional-only name
    that ``**kwargs`` would take); ``bind`` then words the refusal."""
    if count > shape.most:
        return False
    if not kwargs:
        return count >= shape.least and not shape.required
    if count < shape.least and count < shape.positional_only:
        return False  # a required positional-only one is missing
    keywords = shape.keywords
    # given positionally; a positional-only name is free for **kwargs to take
    filled = shape.positional[shape.positional_only : count] if count else ()
    for key in kwargs:
        if (keywords is not None and key not in keywords) or key in filled:
            return False
    for name in shape.positional[count : shape.least]:
        if name not in kwargs:
            return False
    return not shape.required or shape.required <= kwargs.keys()


def check_call(
    fn: Callable[..., Any],
    name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    input_first: bool = False,
) -> None:
    """Raise TaskDefinitionError naming ``name`` and the mismatch when ``fn(*args, **kwargs)``
    would not bind; ``input_first``: a workflow step, whose first argument is the result of
    what it follows."""
    shape = _shape(fn)
    count = len(args) + input_first
    if shape is None or _fits(shape, count, kwargs):
        return
    try:
        shape.signature.bind(*([None] if input_first else []), *args, **kwargs)
    except TypeError as exc:
        step = (
            " (a step gets the result of what it follows as its first argument;"
            " .ignore_result() runs it without)"
            if input_first
            else ""
        )
        raise TaskDefinitionError(
            f"wrong arguments for {name}{_plain(shape.signature)}: {exc}{step}"
        ) from None


def _plain(signature: inspect.Signature) -> inspect.Signature:
    """The signature without annotations: ``(a, b=2)`` reads better in a one-line error."""
    return signature.replace(
        parameters=[p.replace(annotation=_P.empty) for p in signature.parameters.values()],
        return_annotation=inspect.Signature.empty,
    )
