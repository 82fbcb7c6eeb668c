"""Command options made from the settings table, as gunicorn's ``Setting`` makes its argparse
options: each setting declared with a ``flag`` in :mod:`qsup.settings` gives its option name,
help text and value type once, for every command that takes it (``serve``, ``queue start``,
``config show``).

Values reach :func:`qsup.settings.load_config` as text, so a bad one gets the loader's one-line
error naming the setting, the value and the flag (exit 2), like a bad environment variable.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from qsup.settings_table import BY_NAME, setting_type

F = TypeVar("F", bound=Callable[..., Any])
SHORT = {"max_workers": "-w"}  # the one setting with a short option
_METAVARS = {int: "INTEGER", float: "NUMBER", str: "TEXT", list: "A,B"}


def _help(name: str) -> str:
    meta = BY_NAME[name].metadata
    envs = ", ".join(f"${env}" for env in meta["env"])
    return f"{meta['doc']}." + (f" [{envs}]" if envs else "")


def _parameter(name: str) -> inspect.Parameter:
    """The keyword parameter typer reads the setting's option from."""
    flag = BY_NAME[name].metadata["flag"]
    assert flag, f"setting {name} has no flag"
    kind = setting_type(name)
    # a list setting repeats its flag or takes commas: both become one comma-separated text
    annotation = list[str] | None if kind is list else str | None
    option = typer.Option(
        flag, *([SHORT[name]] if name in SHORT else []), help=_help(name), metavar=_METAVARS[kind]
    )
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[annotation, option]
    )


def setting_flags(*names: str) -> Callable[[F], F]:
    """Give a command the options of these settings; their values arrive in its ``**flags``
    (None when not given), ready for ``load_config``."""

    return with_options([_parameter(name) for name in names])


def with_options(extra: list[inspect.Parameter]) -> Callable[[F], F]:
    """Give a command these keyword options; their values arrive in its ``**kwargs``."""

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        command.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*own, *extra]
        )
        return command

    return decorate


def flag_values(flags: dict[str, Any]) -> dict[str, Any]:
    """The options given, as ``load_config`` takes them: lists joined by commas."""
    return {
        name: ",".join(value) if isinstance(value, list) else value
        for name, value in flags.items()
        if value is not None and value != []
    }
