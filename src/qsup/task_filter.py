"""Which tasks an operator means: the one filter ``qsup task list``, ``qsup task cancel`` and
``qsup queue retry`` share (state, queue, name glob, enqueue time, page size, page cursor).

Task ids are UUIDv7: their first 48 bits are the enqueue time in milliseconds. "Newest first"
is therefore the primary key read backwards, and a time window is a range of it, so a page
never sorts or skips rows (keyset paging: ``before`` is the last id of the previous page).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from qsup.errors import ConfigError
from qsup.states import STATES

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NEWEST = uuid.UUID(int=(1 << 128) - 1)


@dataclass(frozen=True)
class TaskFilter:
    """A selection of tasks; None or empty means "any"."""

    states: tuple[str, ...] = STATES
    queues: tuple[str, ...] = ()
    name: str | None = None  # a glob: * any text, ? one character
    since: datetime | None = None
    until: datetime | None = None
    before: uuid.UUID | None = None  # keyset cursor: only ids below this one
    limit: int | None = None  # None: every match (bulk retry and cancel)

    def params(self) -> dict[str, Any]:
        """The parameters of the ``admin_find_tasks`` query."""
        upper = min(self.before or _NEWEST, id_at(self.until) if self.until else _NEWEST)
        return {
            "states": list(self.states),
            "queues": list(self.queues) or None,
            "pattern": like_pattern(self.name) if self.name else None,
            "low": id_at(self.since) if self.since else uuid.UUID(int=0),
            "high": upper,
            "limit": self.limit,
        }

    def describe(self) -> str:
        """The selection in words, for a confirmation prompt."""
        parts = [f"in state {'/'.join(self.states)}"]
        if self.queues:
            parts.append(f"of queue {'/'.join(self.queues)}")
        if self.name:
            parts.append(f"named {self.name}")
        if self.since:
            parts.append(f"enqueued since {self.since.isoformat(' ', 'seconds')}")
        if self.until:
            parts.append(f"enqueued before {self.until.isoformat(' ', 'seconds')}")
        return " ".join(parts)


def id_at(moment: datetime) -> uuid.UUID:
    """The lowest UUIDv7 of ``moment``'s millisecond: ids below it were enqueued earlier."""
    return uuid.UUID(int=int(moment.timestamp() * 1000) << 80)


def like_pattern(glob: str) -> str:
    """A shell glob as a LIKE pattern (``*`` any text, ``?`` one character)."""
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def parse_moment(text: str, option: str, now: datetime | None = None) -> datetime:
    """``1h``, ``30m``, ``2d``, ``1w``, ``90s`` (ago), or an ISO date/time (local time unless
    it names its offset)."""
    now = now or datetime.now(UTC)
    if match := _DURATION.fullmatch(text.strip().lower()):
        return now - timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{option} {text!r}: expected a duration ago (90s, 30m, 1h, 2d, 1w) or an ISO date"
            " or time (2026-12-07, 2026-12-07T10:30, ...+00:00)"
        ) from None
    return moment.astimezone(UTC)


def split_values(values: list[str] | None) -> tuple[str, ...]:
    """Repeated or comma-separated option values, in order, without duplicates."""
    return tuple(dict.fromkeys(v.strip() for value in values or [] for v in value.split(",")))


def parse_states(
    values: list[str] | None, allowed: tuple[str, ...], default: tuple[str, ...]
) -> tuple[str, ...]:
    """The ``--state`` values, each one of ``allowed``; ``default`` when none was given."""
    states = tuple(s for s in split_values(values) if s) or default
    for state in states:
        if state not in allowed:
            raise ConfigError(f"--state {state!r}: choose from {', '.join(allowed)}")
    return states


def parse_filter(
    *,
    state: list[str] | None = None,
    queue: list[str] | None = None,
    name: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int | None = None,
    before: uuid.UUID | None = None,
    allowed: tuple[str, ...] = STATES,
) -> TaskFilter:
    """A :class:`TaskFilter` from option values; ConfigError (exit 2) names a bad one."""
    now = datetime.now(UTC)
    start = parse_moment(since, "--since", now) if since else None
    end = parse_moment(until, "--until", now) if until else None
    if start and end and start >= end:
        raise ConfigError(f"--since {since!r} is not before --until {until!r}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit}: expected 1 or more")
    if name is not None and not name.strip():
        raise ConfigError("--name '': expected a task name or glob (app.tasks:*)")
    return TaskFilter(
        states=parse_states(state, allowed, allowed),
        queues=tuple(q for q in split_values(queue) if q),
        name=name.strip() if name else None,
        since=start,
        until=end,
        before=before,
        limit=limit,
    )
