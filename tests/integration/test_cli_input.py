"""The CLI table with bad input, output piped (``run`` captures it): each case exits with the
README's code and one line naming the argument, never a traceback; and piped tables are never
cut to a terminal's width."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

from tests import tasks
from tests.integration.test_cli import one_line, run
from tests.servers import free_port

BAD_INPUT = [
    (["enqueue", "nocolon"], "TASK 'nocolon' is not a task path of the form module:function"),
    (["enqueue", "nomod:f"], "TASK cannot import module 'nomod'"),
    (["enqueue", "json:nothere"], "TASK module 'json' has no 'nothere'"),
    (["enqueue", "tests.tasks:noop", "--delay", "-5"], "'--delay': -5.0 is not in the range"),
    (["enqueue", "tests.tasks:noop", "--delay", "nan"], "--delay: expected a finite number"),
    (["enqueue", "tests.tasks:noop", "--priority", "high"], "'--priority': 'high' is not"),
    (["enqueue"], "Missing argument 'TASK'"),
    (["enqueue", "json:dumps", "--queue", ""], "queue name '' is invalid"),
    (
        ["enqueue", "json:dumps", "--header", "novalue"],
        "--header: expected KEY=VALUE, got 'novalue'",
    ),
    (["enqueue", "json:dumps", "--header", "=v"], "--header: expected KEY=VALUE, got '=v'"),
    (["enqueue", "json:dumps", "1", "--concurrency-key", "k" * 256], "_concurrency_key must be at"),
    (["serve", "--workers", "0"], "max_workers: value 0 from flag --workers"),
    (["serve", "--min-workers", "-1"], "min_workers: value -1 from flag --min-workers"),
    (["serve", "--no-http", "--import", "nomod"], "imports: cannot import 'nomod' (flag --import)"),
    (["serve", "--app", "nomod:app"], "app: cannot load 'nomod:app'"),
    (["serve", "--host", "bogus.invalid"], "host: cannot listen on bogus.invalid:"),
    (["serve", "--host", "192.0.2.1"], "host: cannot listen on 192.0.2.1:"),
    (["queue", "start", "--workers", "0"], "max_workers: value 0 from flag --workers"),
    (["queue", "clear", "--state", "running", "--yes"], "--state 'running' cannot be cleared"),
    (["queue", "clear", "--state", "bogus", "--yes"], "--state 'bogus' cannot be cleared"),
    (["queue", "clear"], "confirm with --yes"),
    (["queue", "retry"], "queue retry: give task ids or filters (--all-failed, --state, ...)"),
    (["queue", "retry", "--state", "running"], "--state 'running': choose from failed, cancelled"),
    (["queue", "retry", "abcd", "--state", "failed"], "queue retry: give task ids or filters"),
    (["task", "list", "--state", "done"], "--state 'done': choose from waiting, enqueued"),
    (["task", "list", "--since", "yesterday"], "--since 'yesterday': expected a duration ago"),
    (["task", "list", "--until", "5x"], "--until '5x': expected a duration ago"),
    (["task", "list", "--since", "1h", "--until", "2h"], "--since '1h' is not before --until"),
    (["task", "list", "--limit", "0"], "--limit 0: expected 1 or more"),
    (["task", "list", "--limit", "many"], "'--limit': 'many' is not a valid integer"),
    (["task", "list", "--name", " "], "--name '': expected a task name or glob"),
    (["task", "list", "--before", "zz"], "task id 'zz': expected hex digits"),
    (["task", "cancel", "--state", "failed"], "--state 'failed': choose from enqueued, waiting"),
    (["queue", "retry", "xyz!"], "task id 'xyz!': expected hex digits"),
    (["task", "show", "nothex"], "task id 'nothex': expected hex digits"),
    (["task", "cancel"], "task cancel: give a task id or filters (--state, --queue, --name, ...)"),
    (["queue", "status", "--bogus"], "No such option: --bogus"),
    (
        ["queue", "servers", "--database-url", "nonsense"],
        "database_url: invalid PostgreSQL URL 'nonsense' from flag --database-url",
    ),
]


@pytest.mark.parametrize(("args", "needle"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_exits_2_with_one_line(db_url, tmp_path, args, needle):
    result = run(args, db_url, env={"QSUP_PORT": str(free_port())}, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = one_line(result)
    assert line.startswith("qsup: error: ") and needle in line
    assert result.stdout == ""


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_port_in_use_is_blamed_on_the_port(db_url, tmp_path, busy_port):
    result = run(["serve", "--port", str(busy_port)], db_url, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    line = one_line(result)
    assert line.startswith(f"qsup: error: port: cannot listen on 127.0.0.1:{busy_port}")
    assert "(port from flag --port): Address already in use" in line


def test_malformed_database_url_is_2_naming_its_source_and_masking_the_password(tmp_path):
    result = run(
        ["queue", "status"],
        env={"QUEUE_DATABASE_URL": "postgresql://me:hunter2@db.example:54x/q"},
        cwd=tmp_path,
    )
    assert result.returncode == 2
    line = one_line(result)
    assert "database_url: invalid PostgreSQL URL 'postgresql://me:***@db.example:54x/q'" in line
    assert "from env QUEUE_DATABASE_URL: port '54x' is not a number" in line
    assert "hunter2" not in result.stderr
    unreachable = run(["queue", "status", "--database-url", "postgresql://127.0.0.1:1/x"])
    assert unreachable.returncode == 3
    assert "cannot reach PostgreSQL at 127.0.0.1:1/x" in one_line(unreachable)


@pytest.mark.parametrize(
    "args",
    [
        ["task", "show", "deadbeef0000"],
        ["task", "logs", str(uuid.uuid4())],
        ["queue", "retry", "abcd1234"],
    ],
)
def test_an_unknown_task_is_exit_1(db_url, args):
    result = run(args, db_url)
    assert result.returncode == 1
    assert "no task" in one_line(result)


# --- piped output is never cut --------------------------------------------------------------

LONG = "x" * 150


def test_piped_tables_keep_every_value_in_full(queue, conn, db_url, tmp_path):
    conn.execute(
        "INSERT INTO queued_task_workers (server_name, hostname, pid, queues) VALUES"
        " (%s, %s, 4242, %s)",
        (f"server-{LONG}", f"host-{LONG}", [f"queue-{LONG}"]),
    )
    heartbeat = conn.execute("SELECT last_heartbeat FROM queued_task_workers").fetchone()[0]
    env = {"COLUMNS": "40"}  # rich would fit tables into 40 columns: piped output must not
    servers = run(["queue", "servers"], db_url, env=env)
    for value in (
        f"server-{LONG}",
        f"host-{LONG}",
        f"queue-{LONG}",
        heartbeat.isoformat(" ", "seconds"),
    ):
        assert value in servers.stdout, servers.stdout
    assert "…" not in servers.stdout

    ref = queue.add_task(tasks.noop)
    path = f"/very/long/path/{LONG}/module.py"
    traceback = (
        f'Traceback (most recent call last):\n  File "{path}", line 3, in f\nValueError: [b]'
    )
    conn.execute(
        "INSERT INTO queued_task_logs (queued_task_id, type, message) VALUES (%s, 'failed', %s)",
        (ref.task_id, traceback),
    )
    logs = run(["task", "logs", str(ref.task_id)], db_url, env=env)
    assert f'  File "{path}", line 3, in f' in logs.stdout
    assert "ValueError: [b]" in logs.stdout  # text, not rich markup
    assert "…" not in logs.stdout

    config = tmp_path / "q.toml"
    config.write_text(
        f'[[schedules]]\nname = "nightly-{LONG}"\ncron = "0 3 * * *"\n'
        f'task = "tests.tasks:noop"\nqueue = "reports-{LONG}"\n'
    )
    schedules = run(["schedule", "list", "--config", str(config)], db_url, env=env)
    assert f"nightly-{LONG}" in schedules.stdout and f"reports-{LONG}" in schedules.stdout
    assert "…" not in schedules.stdout

    for args in (
        ["queue", "status"],
        ["queue", "stats"],
        ["config", "show", "--config", str(config)],
    ):
        result = run(args, db_url, env=env)
        assert result.returncode == 0 and "…" not in result.stdout, result.stdout
    assert f"queue-{LONG}" not in run(["queue", "status"], db_url, env=env).stdout  # no tasks
    assert str(config) in run(["config", "show", "--config", str(config)], db_url, env=env).stdout
