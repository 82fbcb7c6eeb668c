"""Flow control's pure parts: the ``[limits.QUEUE]`` tables of the TOML file and the rates.

A queue's limits are ``concurrency`` (tasks running at once across all servers), ``rate``
(``"N/second|minute|hour"``: starts in any window of that length) and ``key_concurrency`` (tasks
running at once per ``_concurrency_key``). The database enforces them where tasks are claimed
(``qsup_claim_limited``, ``sql/functions/claim_limited.sql``); this module only reads and
checks them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from qsup.errors import ConfigError
from qsup.keys import checked_key

PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
KEYS = ("concurrency", "rate", "key_concurrency")
MAX_LIMIT = 2**31 - 1
MAX_KEY = 255  # characters of a _concurrency_key
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour)s?\s*$")


class Rate(NamedTuple):
    """At most ``starts`` starts in any window of ``period`` seconds."""

    starts: int
    period: float

    def __str__(self) -> str:
        unit = next(name for name, seconds in PERIODS.items() if seconds == self.period)
        return f"{self.starts}/{unit}"


class Limits(NamedTuple):
    concurrency: int | None = None
    rate: Rate | None = None
    key_concurrency: int | None = None

    @property
    def empty(self) -> bool:
        return self == Limits()


def parse_rate(text: str) -> Rate:
    """``"100/minute"`` -> ``Rate(100, 60.0)``; a ValueError saying what is expected."""
    match = _RATE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError('expected "N/second", "N/minute" or "N/hour" (N a whole number)')
    count = int(match.group(1))
    if not 1 <= count <= MAX_LIMIT:
        raise ValueError(f"expected N between 1 and {MAX_LIMIT}")
    return Rate(count, PERIODS[match.group(2)])


def check_count(value: Any) -> int:
    """A concurrency: a whole number >= 1 (0 would be a pause: use ``qsup queue pause``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected a whole number")
    if not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"expected a number between 1 and {MAX_LIMIT}")
    return value


def limits_from_toml(table: Any, source_of: Callable[[str], str]) -> dict[str, Limits]:
    """The ``[limits]`` table: ``{queue: Limits}``; ``source_of(key)`` says where ``limits.Q.K``
    is written. Errors name the key, the value and the source (exit 2)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"limits: expected [limits.QUEUE] tables in {source_of('limits')}")
    found: dict[str, Limits] = {}
    for queue, entry in table.items():
        where = f"limits.{queue}"
        if not QUEUE_NAME.match(queue):
            raise ConfigError(f"{where}: invalid queue name from {source_of(where)}")
        if not isinstance(entry, Mapping):
            raise ConfigError(
                f"{where}: expected a table of {', '.join(KEYS)} in {source_of(where)}"
            )
        values: dict[str, Any] = {}
        for key, value in entry.items():
            name = f"{where}.{key}"
            if key not in KEYS:
                raise ConfigError(
                    f"{name}: unknown limit in {source_of(name)} (known: {', '.join(KEYS)})"
                )
            try:
                values[key] = parse_rate(value) if key == "rate" else check_count(value)
            except ValueError as exc:
                raise ConfigError(
                    f"{name}: invalid value {value!r} from {source_of(name)}: {exc}"
                ) from None
        found[queue] = Limits(**values)
    return found


def describe(limits: Limits) -> str:
    """``concurrency=5, rate=100/minute`` (``-`` when there is none)."""
    parts = [f"{key}={value}" for key, value in zip(KEYS, limits, strict=True) if value]
    return ", ".join(parts) or "-"


def concurrency_key(option: Any, default: Any, args: tuple[Any, ...], kwargs: Any) -> str | None:
    """A task's ``_concurrency_key``, else what its ``@task(concurrency_key=fn)`` makes of
    the call's arguments; text (or None: no key)."""
    key = option if option is not None or default is None else default(*args, **kwargs)
    return checked_key("_concurrency_key", key, MAX_KEY)
