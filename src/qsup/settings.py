"""Loading the settings of :mod:`qsup.settings_table`: precedence, lowest first, defaults <
TOML file < environment < CLI flags; each value remembers where it came from. Bad values are
a one-line :class:`~qsup.errors.ConfigError` naming the key, the value and its source.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qsup.errors import ConfigError
from qsup.flow import Limits, limits_from_toml
from qsup.settings_table import (
    BY_NAME,
    LOG_LEVELS,
    SETTINGS,
    TYPES,
    Config,
    cpu_count,
    default_of,
    setting_type,
)

__all__ = [
    "LOG_LEVELS",
    "SETTINGS",
    "Config",
    "default_of",
    "load_config",
    "setting_type",
]
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


_TEXT_PARSERS: dict[type, tuple[Any, str]] = {
    int: (int, "an integer"),
    float: (float, "a number"),
}


def _coerce(name: str, value: Any, source: str, from_text: bool) -> Any:
    """A raw value (env/flag text, or a TOML value) as the setting's type, or a ConfigError
    naming the key, the value and its source."""
    kind = setting_type(name)

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{name}: invalid value {value!r} from {source}: expected {expected}")

    if "None" in str(TYPES[name]) and (value is None or str(value).strip() == ""):
        return None
    if from_text:
        return _from_text(kind, str(value).strip(), bad)
    return _from_toml(kind, value, bad)


def _from_text(kind: type, text: str, bad: Any) -> Any:
    if kind is bool:
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise bad("a boolean (true/false, 1/0, yes/no, on/off)")
    if kind in _TEXT_PARSERS:
        parse, expected = _TEXT_PARSERS[kind]
        try:
            number = parse(text)
        except ValueError:
            raise bad(expected) from None
        if not math.isfinite(number):
            raise bad("a finite number")
        return number
    if kind is list:
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def _from_toml(kind: type, value: Any, bad: Any) -> Any:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is bool and not isinstance(value, bool):
        raise bad("a boolean")
    if kind is int and not (is_number and isinstance(value, int)):
        raise bad("an integer")
    if kind is float:
        if not is_number:
            raise bad("a number")
        if not math.isfinite(value):
            raise bad("a finite number")
        return float(value)
    if kind is list and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise bad("a list of strings")
    if kind is str and not isinstance(value, str):
        raise bad("a string")
    return list(value) if kind is list else value


def _check_bounds(name: str, value: Any, source: str) -> None:
    meta = BY_NAME[name].metadata
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    low, high = meta["min"], meta["max"]
    if low is not None and value < low:
        raise ConfigError(f"{name}: value {value!r} from {source} is below the minimum {low}")
    if high is not None and value > high:
        raise ConfigError(f"{name}: value {value!r} from {source} is above the maximum {high}")


def _unknown_key(key: str, source: str) -> ConfigError:
    hint = difflib.get_close_matches(key, [*BY_NAME, "schedules", "limits"], n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    return ConfigError(f"{key}: unknown setting in {source}{suggestion}")


def _line_of(text: str, key: str) -> int | None:
    match = re.search(rf"^[ \t]*{re.escape(key)}[ \t]*=", text, flags=re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else None


_TABLE = re.compile(r"^[ \t]*\[", re.MULTILINE)
_KEY = re.compile(r"^[ \t]*([A-Za-z_][\w-]*)[ \t]*=", re.MULTILINE)


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _schedule_sources(path: Path, text: str, count: int) -> dict[str, str]:
    """``schedules[i]`` -> ``file PATH:LINE`` of the i-th ``[[schedules]]`` header, and
    ``schedules[i].KEY`` -> the line of each key of that table (errors cite the bad key)."""
    heads = [
        m.start()
        for m in re.finditer(r"^[ \t]*\[\[[ \t]*schedules[ \t]*\]\]", text, flags=re.MULTILINE)
    ]
    found = {"schedules": f"file {path}"}
    for index in range(count):
        if index >= len(heads):
            found[f"schedules[{index}]"] = f"file {path}"
            continue
        start = heads[index]
        following = _TABLE.search(text, start + 1)
        end = following.start() if following else len(text)
        found[f"schedules[{index}]"] = f"file {path}:{_line_at(text, start)}"
        for key in _KEY.finditer(text, start, end):
            where = f"file {path}:{_line_at(text, key.start())}"
            found.setdefault(f"schedules[{index}].{key.group(1)}", where)
    return found


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a TOML file; errors become one-line ConfigErrors with line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path}: not UTF-8 text") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        last = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
        where = str(exc).replace("at end of document", f"at end of document, line {last}")
        raise ConfigError(f"config file {path}: malformed TOML: {where}") from None


def find_config_file(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """``--config``, else ``QSUP_CONFIG``, else ``./config/queue.toml`` if present."""
    if explicit:
        return Path(explicit)
    if environ.get("QSUP_CONFIG"):
        return Path(environ["QSUP_CONFIG"])
    default = Path("config/queue.toml")
    return default if default.is_file() else None


def _limits(path: Path, text: str, table: Any) -> tuple[dict[str, Limits], dict[str, str]]:
    """The ``[limits.QUEUE]`` tables and where each is (``limits.QUEUE`` -> ``file PATH:LINE``
    of its header); errors cite the line of the bad key."""

    def head(queue: str) -> re.Match[str] | None:
        pattern = rf"^[ \t]*\[[ \t]*limits\.\"?{re.escape(queue)}\"?[ \t]*\]"
        return re.search(pattern, text, re.MULTILINE)

    def source_of(name: str) -> str:
        _, queue, key = (name.split(".", 2) + ["", ""])[:3]
        start = head(queue)
        if not start:
            return f"file {path}"
        following = _TABLE.search(text, start.end())
        end = following.start() if following else len(text)
        found = re.compile(rf"^[ \t]*{re.escape(key)}[ \t]*=", re.MULTILINE).search(
            text, start.end(), end
        )
        return f"file {path}:{_line_at(text, (found or start).start())}"

    def table_source(queue: str) -> str:
        start = head(queue)
        return f"file {path}:{_line_at(text, start.start())}" if start else f"file {path}"

    limits = limits_from_toml(table, source_of)
    return limits, {f"limits.{queue}": table_source(queue) for queue in limits}


Layer = dict[str, tuple[Any, str]]  # setting name -> (value, source)


def _file_layer(path: Path) -> tuple[Layer, list[Any], dict[str, str], dict[str, Limits]]:
    """Settings of a TOML file, its ``[[schedules]]``, where each schedule is, and its
    ``[limits]``."""
    data, text = read_toml(path)
    layer: Layer = {}
    for key, raw in data.items():
        if key in ("schedules", "limits"):
            continue
        line = _line_of(text, key)
        source = f"file {path}:{line}" if line else f"file {path}"
        if key not in BY_NAME:
            raise _unknown_key(key, source)
        layer[key] = (_coerce(key, raw, source, from_text=False), source)
    schedules = data.get("schedules", [])
    if not isinstance(schedules, list) or not all(isinstance(s, dict) for s in schedules):
        raise ConfigError(f"schedules: expected [[schedules]] tables in config file {path}")
    sources = _schedule_sources(path, text, len(schedules)) if schedules else {}
    limits, limit_sources = _limits(path, text, data.get("limits", {}))
    return layer, schedules, sources | limit_sources, limits


def _env_layer(environ: Mapping[str, str]) -> Layer:
    layer: Layer = {}
    for f in SETTINGS:
        env_name = next((e for e in f.metadata["env"] if e in environ), None)
        if env_name is not None:
            source = f"env {env_name}"
            layer[f.name] = (_coerce(f.name, environ[env_name], source, from_text=True), source)
    return layer


def _flag_layer(flags: Mapping[str, Any]) -> Layer:
    layer: Layer = {}
    for name, value in flags.items():
        if value is not None:
            source = f"flag {BY_NAME[name].metadata['flag'] or name}"
            layer[name] = (_coerce(name, value, source, from_text=isinstance(value, str)), source)
    return layer


def load_config(
    flags: Mapping[str, Any] | None = None,
    *,
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Layer defaults < TOML < environment < flags into a frozen :class:`Config`."""
    environ = os.environ if environ is None else environ
    path = find_config_file(config_file, environ)
    file_layer, schedules, schedule_sources, limits = (
        _file_layer(path) if path else ({}, [], {}, {})
    )
    merged = file_layer | _env_layer(environ) | _flag_layer(flags or {})
    for name, (value, source) in merged.items():
        _check_bounds(name, value, source)
    sources = {f.name: "default" for f in SETTINGS}
    sources.update({name: source for name, (_, source) in merged.items()})
    sources.update(schedule_sources)  # and limits.QUEUE
    values = {name: value for name, (value, _) in merged.items()}
    if limits:
        sources["limits"] = f"file {path}"
    return Config(**values, schedules=tuple(schedules), limits=limits, sources=sources)


def display_value(name: str, value: Any) -> str:
    """How ``config show`` prints a value (secrets masked)."""
    if value is not None and BY_NAME[name].metadata["secret"]:
        return "********"
    if isinstance(value, list):
        return ",".join(value)
    return "" if value is None else str(value)


def _toml_value(value: Any) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)


_SCHEDULE_EXAMPLE = """\
# Cron schedules: each tick enqueues exactly one task across all servers.
# cron has 5 fields (minute hour day month weekday) or 6 (a seconds field first).
# on_missed: "run_once" (default) runs one task for ticks missed while every server was down;
# "skip" drops them. timezone is an IANA name (default UTC).
#
# [[schedules]]
# name = "nightly-report"
# cron = "0 3 * * *"
# task = "myapp.tasks:nightly_report"
# args = []
# kwargs = {}
# queue = "default"
# priority = 0
# timezone = "UTC"
# on_missed = "run_once"
"""

_LIMITS_EXAMPLE = """
# Flow control: limits per queue, enforced in the database across all servers (see the README).
# concurrency: most running at once; rate: most starts in any window ("N/second|minute|hour");
# key_concurrency: most running at once per _concurrency_key. qsup queue limit overrides them.
#
# [limits.payments]
# concurrency = 5
# rate = "100/minute"
# key_concurrency = 1
"""


def example_toml() -> str:
    """The commented example config: every key at its default (``config/queue.toml``)."""
    out = [
        "# qsup configuration. Every key is shown at its default; uncomment to change it.",
        "# Precedence: command-line flag > environment variable > this file > default.",
        "# Generated by qsup.settings.example_toml() (qsup config example).",
        "",
    ]
    for f in SETTINGS:
        meta = f.metadata
        where = [f"env {', '.join(meta['env'])}"] if meta["env"] else []
        where += [f"flag {meta['flag']}"] if meta["flag"] else []
        out.append(f"# {meta['doc']}" + (f" [{'; '.join(where)}]" if where else ""))
        if f.default_factory is cpu_count:  # type: ignore[comparison-overlap]
            out.append(f"# {f.name} = 4  # default: the number of CPUs")
        else:
            out.append(f"# {f.name} = {_toml_value(default_of(f))}")
        out.append("")
    return "\n".join(out) + _SCHEDULE_EXAMPLE + _LIMITS_EXAMPLE
