"""SQL lives in the ``.sql`` files of this package, loaded once.

Every ``*.sql`` file beside this module holds named queries: a ``-- name: NAME`` line, a
``-- description`` comment line, then the statement. Names are unique across files.
"""

from __future__ import annotations

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


def migrations() -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` for every migration file, in order."""
    folder = resources.files(__package__).joinpath("migrations")
    result = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            result.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return result
