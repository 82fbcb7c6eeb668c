"""Task ids as people read and type them.

A UUIDv7 starts with its creation time in milliseconds, so every task of a minute shares its first
8 hex digits. Its last group (12 hex digits, all random) tells tasks apart: that is the short form
qsup shows. A typed id is the full id, or a unique prefix or suffix (the short form, or its end)
of its 32 hex digits, with or without dashes. The CLI and the HTTP API resolve ids here.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from qsup.errors import ConfigError, TaskNotFound
from qsup.sql import queries

SHORT_DIGITS = 12
MIN_DIGITS = 4
EXAMPLES = 3  # matches named when a typed id is ambiguous
_HEX = re.compile(r"[0-9a-f]+")


class AmbiguousTaskId(ConfigError):
    """A typed id matches several tasks (bad usage: exit 2, HTTP 400)."""


def short_id(task_id: uuid.UUID | str) -> str:
    """The last 12 hex digits of a task id: what qsup shows people."""
    return str(task_id)[-SHORT_DIGITS:]


@dataclass(frozen=True)
class IdPart:
    """Some hex digits of an id, matched at its start or at its end."""

    digits: str

    def params(self) -> dict[str, Any]:
        """Query parameters: the prefix as a range of the primary key, and the digits."""
        return {
            "low": uuid.UUID(self.digits.ljust(32, "0")),
            "high": uuid.UUID(self.digits.ljust(32, "f")),
            "digits": self.digits,
            "limit": EXAMPLES,
        }


def parse_task_id(text: str) -> uuid.UUID | IdPart:
    """A full id, or the part of one that was typed; ConfigError when it cannot be either."""
    digits = text.strip().replace("-", "").lower()
    if not _HEX.fullmatch(digits) or not MIN_DIGITS <= len(digits) <= 32:
        raise ConfigError(
            f"task id {text!r}: expected hex digits: the full id, its {SHORT_DIGITS}-digit short"
            f" form, or a unique prefix or suffix of {MIN_DIGITS}+ digits"
        )
    return uuid.UUID(digits) if len(digits) == 32 else IdPart(digits)


def ambiguous(text: str, count: int, examples: list[uuid.UUID]) -> AmbiguousTaskId:
    """Name how many tasks match and longer forms that would tell them apart."""
    longer = len(text.replace("-", "")) >= SHORT_DIGITS
    shown = [str(i) if longer else short_id(i) for i in examples]
    more = ", ..." if count > len(examples) else ""
    return AmbiguousTaskId(
        f"task id {text!r} matches {count} tasks: type more digits, such as the"
        f" {'full id' if longer else 'short id'} ({', '.join(shown)}{more})"
    )


def resolve_task_id(conn: psycopg.Connection[Any], text: str) -> uuid.UUID:
    """The one task id that ``text`` stands for. A full id is returned as typed (callers say
    when no such task exists); a part must match exactly one task."""
    parsed = parse_task_id(text)
    if isinstance(parsed, uuid.UUID):
        return parsed
    rows = conn.execute(queries()["find_task_ids"], parsed.params()).fetchall()
    if not rows:
        raise TaskNotFound(f"no task id starts or ends with {text!r}")
    if len(rows) > 1:
        raise ambiguous(text, rows[0][1], [row[0] for row in rows])
    found: uuid.UUID = rows[0][0]
    return found
