"""``qsup queue pause|resume|limit|limits``: flow control at run time (stored in the database,
obeyed by every server within a second); :mod:`qsup.cli.queue_cmd` adds them to its group."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from qsup import flow, flow_store
from qsup.cli.common import ConfigFile, DatabaseUrl, Json, database, print_json, print_table
from qsup.cli.common import settings as load_settings
from qsup.errors import ConfigError
from qsup.settings import Config

Name = Annotated[str, typer.Argument(help="Queue name.")]


def _queue(name: str) -> str:
    if not flow.QUEUE_NAME.match(name):
        raise ConfigError(f"queue name {name!r} is invalid: use 1-255 letters, digits, _ . : -")
    return name


def _pause(name: str, paused: bool, json: bool, config: str | None, url: str | None) -> None:
    cfg = load_settings(config, database_url=url)
    with database(cfg) as conn:
        flow_store.set_paused(conn, _queue(name), paused, cfg.wake_channel)
    word = "paused" if paused else "resumed"
    if json:
        print_json({"queue": name, "paused": paused})
    else:
        typer.echo(f"queue {name} {word}")


def pause(
    name: Name, json: Json = False, config: ConfigFile = None, database_url: DatabaseUrl = None
) -> None:
    """Stop starting tasks of a queue on every server (running ones finish)."""
    _pause(name, True, json, config, database_url)


def resume(
    name: Name, json: Json = False, config: ConfigFile = None, database_url: DatabaseUrl = None
) -> None:
    """Start tasks of a paused queue again."""
    _pause(name, False, json, config, database_url)


def _count(option: str, value: int | None) -> int | None:
    try:
        return None if value is None else flow.check_count(value)
    except ValueError as exc:
        raise ConfigError(
            f"{option}: invalid value {value!r} from the command line: {exc}"
        ) from None


def limit(
    name: Name,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="Most running at once, all servers.")
    ] = None,
    rate: Annotated[
        str | None, typer.Option("--rate", help='Most starts per window: "50/minute".')
    ] = None,
    key_concurrency: Annotated[
        int | None, typer.Option("--key-concurrency", help="Most running at once per key.")
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Drop the runtime limits (the file's apply again).")
    ] = False,
    json: Json = False,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Override a queue's limits from the file at run time, for every server, until --clear."""
    try:
        parsed_rate = flow.parse_rate(rate) if rate is not None else None
    except ValueError as exc:
        raise ConfigError(f"--rate: invalid value {rate!r} from the command line: {exc}") from None
    limits = flow.Limits(
        _count("--concurrency", concurrency),
        parsed_rate,
        _count("--key-concurrency", key_concurrency),
    )
    if limits.empty and not clear:
        raise ConfigError("queue limit: give --concurrency, --rate, --key-concurrency or --clear")
    cfg = load_settings(config, database_url=database_url)
    with database(cfg) as conn:
        flow_store.set_runtime_limits(conn, _queue(name), limits, clear, cfg.wake_channel)
        report = [r for r in flow_store.usage_report(conn) if r["queue"] == name]
    if json:
        print_json(report[0] if report else {"queue": name})
    else:
        typer.echo(f"queue {name}: " + (_describe(report[0]) if report else "no limits"))


def _describe(row: dict[str, object]) -> str:
    source = row["source"]
    assert isinstance(source, dict)
    parts = [f"{key}={row[key]} ({where})" for key, where in source.items()]
    return ", ".join(parts) or "no limits"


Apply = Annotated[
    bool,
    typer.Option(
        "--apply",
        help="Make the [limits] of the --config file the file limits in force on every server"
        " (queues it does not name lose theirs).",
    ),
]


def limits(
    apply: Apply = False,
    json: Json = False,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Paused and limited queues: limits, their source, servers whose file differs, running
    tasks, starts in the window."""
    cfg = load_settings(config, database_url=database_url)
    with database(cfg) as conn:
        if apply:
            _apply(conn, cfg, json)
        report = flow_store.usage_report(conn)
    if json:
        print_json(report)
    else:
        print_limits(report)


def _apply(conn: Any, cfg: Config, json: bool) -> None:
    """``--apply``: a file with no [limits.QUEUE] table is refused (exit 2), so that a
    forgotten --config cannot drop every limit here either."""
    where = cfg.sources.get("limits")
    if not cfg.limits or where is None:
        raise ConfigError(
            "queue limits --apply: no [limits.QUEUE] table in the configuration file"
            " (give it with --config PATH)"
        )
    source = f"qsup queue limits --apply ({where})"
    changed = flow_store.apply_file_limits(conn, cfg.limits, source, cfg.wake_channel)
    if not json:
        typer.echo(f"applied {where}: " + (", ".join(changed) or "nothing changed"))


def _differs(row: dict[str, Any]) -> str:
    """The running servers whose file declares other limits: ``server 4: concurrency=5``."""
    parts = [
        f"server {d['server']}: " + ", ".join(f"{k}={d[k]}" for k in flow.KEYS if d[k])
        for d in row["file_differs"]
    ]
    return "; ".join(parts) or "-"


def print_limits(report: list[dict[str, Any]], title: str | None = None) -> None:
    print_table(
        (
            "queue",
            "paused",
            "limits (source)",
            "file limits from",
            "files that differ",
            "running",
            "starts in window",
        ),  # fmt: skip
        [
            (
                str(r["queue"]),
                "yes" if r["paused"] else "no",
                _describe(r),
                r["file_source"] or "-",
                _differs(r),
                str(r["running"]),
                str(r["started_in_window"]) if r["rate"] else "-",
            )
            for r in report
        ],
        title,
    )
