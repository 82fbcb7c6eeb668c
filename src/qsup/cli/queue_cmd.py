"""``qsup queue status|start``."""

from __future__ import annotations

from typing import Annotated

import typer

from qsup import repo
from qsup.cli.common import ConfigFile, DatabaseUrl, Json, database, print_json, settings
from qsup.cli.serve_cmd import Imports, MinWorkers, Queues, start as start_server

app = typer.Typer(help="Look at and operate the queue.", no_args_is_help=True)


@app.command()
def start(
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="Most worker processes.")] = None,
    min_workers: MinWorkers = None,
    queues: Queues = None,
    imports: Imports = None,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Run workers without HTTP (same as serve --no-http)."""
    start_server(config, database_url=database_url, max_workers=workers,
                 min_workers=min_workers, queues=queues, imports=imports or None, http=False)


@app.command()
def status(json: Json = False, config: ConfigFile = None, database_url: DatabaseUrl = None) -> None:
    """Servers, workers, task counts by queue and state, oldest waiting task."""
    cfg = settings(config, database_url=database_url)
    with database(cfg) as conn:
        servers = [s for s in repo.list_servers(conn) if s["is_running"]]
        counts = repo.counts_by_queue_and_state(conn)
        oldest = repo.oldest_waiting(conn)
    by_state: dict[str, int] = {}
    for _, state, n in counts:
        by_state[state] = by_state.get(state, 0) + n
    report = {
        "servers": len(servers),
        "workers_active": sum(s["active_workers"] for s in servers),
        "workers_idle": sum(s["idle_workers"] for s in servers),
        "tasks_by_state": by_state,
        "tasks_by_queue": [{"queue": q, "state": s, "count": n} for q, s, n in counts],
        "oldest_waiting_seconds": oldest,
    }
    if json:
        print_json(report)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"servers running: {report['servers']}  workers active: "
                  f"{report['workers_active']}  idle: {report['workers_idle']}")
    table = Table("queue", "state", "count")
    for q, s, n in counts:
        table.add_row(q, s, str(n))
    console.print(table)
    console.print("oldest waiting task: " + (f"{oldest:.1f} s" if oldest is not None else "none"))
