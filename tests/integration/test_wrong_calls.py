"""A call that does not bind to its function is refused where it is made, by every enqueue
path, with nothing written; ``qsup enqueue`` refuses what the server's workers would."""

from __future__ import annotations

import asyncio

import pytest

from qsup import TaskDefinitionError
from qsup.fastapi import QueuedTasks
from tests import tasks
from tests.integration.test_cli import one_line, run
from tests.integration.test_http import AUTH, TestClient, client

__all__ = ["client"]  # the fixture

ARITY = "wrong arguments for tests.tasks:add(a, b): too many positional arguments"
KEYWORD = "wrong arguments for tests.tasks:add(a, b): got an unexpected keyword argument 'c'"


def count(conn) -> int:
    return int(conn.execute("SELECT count(*) FROM queued_tasks").fetchone()[0])


def test_python_enqueues_refuse_a_call_that_does_not_bind(queue, conn):
    with pytest.raises(TaskDefinitionError, match=r"tests.tasks:add\(a, b\)") as caught:
        queue.add_task(tasks.add, 1, 2, 3)
    assert str(caught.value) == ARITY
    with pytest.raises(TaskDefinitionError, match="unexpected keyword argument 'c'"):
        queue.add_task(tasks.add, 1, 2, c=3, _queue="q")
    with pytest.raises(TaskDefinitionError, match="too many positional"):
        queue.add_tasks([(tasks.add, (1, 2), {}), (tasks.add, (1, 2, 3), {})])
    with pytest.raises(TaskDefinitionError, match=r"decorated\(x\): missing"):
        tasks.decorated.add_task()
    with pytest.raises(TaskDefinitionError, match="too many positional"):
        asyncio.run(queue.add_task_async(tasks.add, 1, 2, 3))

    async def in_a_request() -> None:
        QueuedTasks(queue).add_task(tasks.add, 1, 2, c=2)

    with pytest.raises(TaskDefinitionError, match="unexpected keyword argument 'c'"):
        asyncio.run(in_a_request())
    assert count(conn) == 0  # the batch's good first call was not written either


def test_http_enqueue_refuses_it_with_a_400(client: TestClient, conn) -> None:
    response = client.post(
        "/api/tasks", headers=AUTH, json={"task": "tests.tasks:decorated", "args": [1, 2]}
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "wrong arguments for tests.tasks:decorated(x): too many positional arguments"
    }
    assert count(conn) == 0


def test_cli_enqueue_refuses_it_in_one_line(db_url, conn):
    for args, message in (
        (["tests.tasks:add", "1", "2", "3"], ARITY),
        (["tests.tasks:add"], "wrong arguments for tests.tasks:add(a, b): missing a required"
                              " argument: 'a'"),
    ):  # fmt: skip
        result = run(["enqueue", *args], db_url)
        assert result.returncode == 2 and result.stdout == ""
        assert one_line(result) == f"qsup: error: enqueue: {message}"
    assert count(conn) == 0


REFUSED = (
    "qsup: error: enqueue: TaskNotAllowed: os:system is not in the server's modules"
    " (allowed_task_modules)"
)


def test_cli_enqueue_refuses_what_the_servers_workers_would(db_url, conn, tmp_path):
    marker = tmp_path / "ran"
    config = tmp_path / "queue.toml"
    config.write_text('imports = ["tests.tasks"]\n')
    for given in (["--import", "tests.tasks"], ["--config", str(config)]):
        result = run(["enqueue", "os:system", f"touch {marker}", *given], db_url)
        assert result.returncode == 2 and one_line(result) == REFUSED, given
    in_env = run(["enqueue", "os:system", "x"], db_url, env={"QUEUE_IMPORTS": "tests.tasks"})
    assert in_env.returncode == 2 and one_line(in_env) == REFUSED
    assert count(conn) == 0
    ok = run(["enqueue", "tests.tasks:add", "1", "2", "--import", "tests"], db_url)
    assert ok.returncode == 0, ok.stderr  # a submodule of an imported package
    star = run(["enqueue", "os:getpid"], db_url, env={"QUEUE_ALLOWED_TASK_MODULES": "*"})
    assert star.returncode == 0, star.stderr
    blind = run(["enqueue", "os:getpid"], db_url)  # no configuration: the workers decide
    assert blind.returncode == 0, blind.stderr
    assert count(conn) == 3 and not marker.exists()


def test_a_schedule_whose_call_does_not_bind_is_refused_at_start(tmp_path):
    path = tmp_path / "q.toml"
    path.write_text(
        '[[schedules]]\nname = "x"\ncron = "* * * * *"\ntask = "tests.tasks:add"\nargs = [1]\n'
    )
    for command in (["config", "check"], ["serve", "--no-http"]):
        result = run([*command, "--config", str(path)], "postgresql://127.0.0.1:1/x")
        assert result.returncode == 2, (command, result.stderr)
        line = one_line(result)
        assert f"schedule 'x': task = 'tests.tasks:add' from file {path}" in line, command
        assert "wrong arguments for tests.tasks:add(a, b): missing a required argument" in line
