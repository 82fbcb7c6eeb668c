"""SQL lives in the ``.sql`` files of this package, loaded once.

Every ``*.sql`` file beside this module holds named queries: a ``-- name: NAME`` line, a
``-- description`` comment line, then the statement. Names are unique across files.
``migrations/`` holds the schema's history (released files never change); ``functions/`` the
database functions, which are code: every migrate applies them again when their text changed.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from importlib import resources
from typing import LiteralString, cast

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split a file into ``{name: statement}``; comment lines are dropped."""
    queries: dict[str, str] = {}
    parts = _HEADER.split(text)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        statement = "\n".join(lines).strip().rstrip(";")
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = statement
    return queries


@cache
def queries() -> dict[str, LiteralString]:
    """All named queries of the package, read once."""
    found: dict[str, str] = {}
    for entry in sorted(resources.files(__package__).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            for name, statement in parse_queries(entry.read_text(encoding="utf-8")).items():
                if name in found:
                    raise ValueError(f"query {name!r} is defined in two files")
                found[name] = statement
    return cast(dict[str, LiteralString], found)


def _folder(name: str) -> list[tuple[str, str]]:
    """``(file name, text)`` of every ``.sql`` file of a sub-folder, in name order."""
    folder = resources.files(__package__).joinpath(name)
    entries = sorted(folder.iterdir(), key=lambda e: e.name)
    return [(e.name, e.read_text(encoding="utf-8")) for e in entries if e.name.endswith(".sql")]


def migrations() -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` for every migration file, in order."""
    return [(int(name.split("_", 1)[0]), name, sql) for name, sql in _folder("migrations")]


@cache
def functions() -> list[tuple[str, str]]:
    """``(name, sql)`` of every database function file (``functions/``): code, not history."""
    return _folder("functions")


@cache
def functions_digest() -> str:
    """SHA-256 of the function files' names and text: what a database records it runs."""
    digest = hashlib.sha256()
    for name, sql in functions():
        digest.update(f"{name}\0{sql}\0".encode())
    return digest.hexdigest()
