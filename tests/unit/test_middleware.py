"""Middleware in one process: a real worker Runner (no server) with the recording middleware of
tests.hooks_support; the chain, the order, what a raising hook does, and bad configuration."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from qsup import context, middleware, protocol
from qsup.errors import ConfigError
from qsup.settings import load_config
from qsup.worker import runner as runner_module
from qsup.worker.runner import Runner

RECORDING = ["tests.hooks_support:Outer", "tests.hooks_support:Inner"]
TASK_ID = "01900000-0000-7000-8000-000000000001"


def job(name: str, args: str = "[]", attempts: int = 1, max_retries: int = 3) -> protocol.Job:
    return protocol.Job(
        TASK_ID, name, args, "{}", 5.0, attempts, max_retries, "{}", "mail", '{"rid": "r-9"}'
    )


_made: list[Runner] = []


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where the hooks' calls go; every Runner made in the test is closed after it."""
    path = tmp_path / "hooks.jsonl"
    monkeypatch.setenv("QSUP_TEST_HOOKS", str(path))
    context.bind_channel(lambda data: None)
    alarm = signal.getsignal(signal.SIGALRM)
    yield path
    while _made:
        _made.pop().loop.close()
    signal.signal(signal.SIGALRM, alarm)
    middleware.forget_instances()


def runner(*names: str) -> Runner:
    flags = {"middleware": list(names), "retry_backoff_base": 2.0, "imports": "tests"}
    _made.append(Runner(load_config(flags)))
    return _made[-1]


def hooks(path: Path) -> list[str]:
    return [f"{c['hook']}:{c['mw']}" for c in map(json.loads, path.read_text().splitlines())]


def test_no_middleware_leaves_the_plain_run_path(recorded: Path) -> None:
    plain = runner()
    assert plain.hooks is None and plain.function is runner_module._function
    assert plain.run(job("tests.tasks:add", "[1, 2]")).result == "3"


def test_the_order_is_declared_outermost_first_and_reversed_on_the_way_out(
    recorded: Path,
) -> None:
    finished = runner(*RECORDING).run(job("tests.tasks:add", "[1, 2]"))
    assert (finished.outcome, finished.result) == ("ok", "3")
    assert hooks(recorded) == [
        "before_task:outer",
        "before_task:inner",
        "around_enter:outer",
        "around_enter:inner",
        "around_exit:inner",
        "around_exit:outer",
        "after_task:inner",
        "after_task:outer",
    ]
    first = json.loads(recorded.read_text().splitlines()[0])
    assert (first["queue"], first["attempt"], first["headers"]) == ("mail", 1, {"rid": "r-9"})


def test_a_failed_attempt_with_retries_left_calls_on_retry_with_the_delay_sent(
    recorded: Path,
) -> None:
    finished = runner(*RECORDING).run(job("tests.tasks:always_fail", attempts=1))
    assert finished.outcome == "error"
    retry = [json.loads(line) for line in recorded.read_text().splitlines()][-2:]
    assert [(c["hook"], c["exc"]) for c in retry] == [("on_retry", "ValueError")] * 2
    assert retry[0]["delay"] == finished.retry_delay  # the supervisor uses the same delay
    assert 1.0 <= retry[0]["delay"] <= 3.0  # base 2 s with jitter


def test_the_last_attempt_calls_on_failure_and_wrong_arguments_stay_fatal(recorded: Path) -> None:
    r = runner(*RECORDING)
    assert r.run(job("tests.tasks:always_fail", attempts=4)).outcome == "error"
    assert hooks(recorded)[-2:] == ["on_failure:inner", "on_failure:outer"]
    wrong = r.run(job("tests.tasks:add", "[1]"))
    assert wrong.outcome == "fatal" and "wrong arguments for tests.tasks:add" in (wrong.error or "")
    assert hooks(recorded)[-2:] == ["on_failure:inner", "on_failure:outer"]


def test_a_task_that_cannot_be_imported_still_reaches_on_failure(recorded: Path) -> None:
    finished = runner(*RECORDING).run(job("tests.nowhere:fn"))
    assert finished.outcome == "fatal"
    assert hooks(recorded) == [
        "before_task:outer",
        "before_task:inner",
        "on_failure:inner",
        "on_failure:outer",
    ]
    assert json.loads(recorded.read_text().splitlines()[-1])["exc"] == "TaskDefinitionError"


def test_a_task_outside_the_servers_modules_reaches_on_failure_as_task_not_allowed(
    recorded: Path,
) -> None:
    finished = runner(*RECORDING).run(job("os:system", '["true"]'))
    assert finished.outcome == "fatal" and finished.error == (
        "TaskNotAllowed: os:system is not in the server's modules (allowed_task_modules)"
    )
    assert hooks(recorded)[-2:] == ["on_failure:inner", "on_failure:outer"]
    assert json.loads(recorded.read_text().splitlines()[-1])["exc"] == "TaskNotAllowed"


def test_a_timeout_reaches_on_failure_as_task_timeout_sync_and_async(recorded: Path) -> None:
    r = runner(*RECORDING)
    sync = job("tests.hooks_support:sleep", "[5]", attempts=4)._replace(timeout=0.05)
    async_ = job("tests.tasks:async_add", "[1, 2]", attempts=4)._replace(timeout=0.0001)
    for timed in (sync, async_):
        assert r.run(timed).outcome == "timeout"
        last = json.loads(recorded.read_text().splitlines()[-1])
        assert (last["hook"], last["exc"], last["name"]) == (
            "on_failure",
            "TaskTimeout",
            timed.name,
        )


def test_raising_hooks_are_logged_by_name_and_change_nothing(recorded: Path) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="ERROR", format="{message}")
    try:
        r = runner("tests.hooks_support:Raising")
        assert r.run(job("tests.tasks:add", "[2, 2]")).result == "4"
        assert r.run(job("tests.tasks:always_fail", attempts=4)).outcome == "error"
    finally:
        logger.remove(sink)
    names = [line.split()[2] for line in lines]
    assert names == [
        "tests.hooks_support:Raising.before_task",
        "tests.hooks_support:Raising.after_task",
        "tests.hooks_support:Raising.before_task",
        "tests.hooks_support:Raising.on_failure",
    ]


def test_around_task_may_change_the_result_or_raise(recorded: Path) -> None:
    doubling = runner("tests.hooks_support:Doubling")
    assert doubling.run(job("tests.tasks:add", "[2, 3]")).result == "10"
    # a sync around_task does not wrap an async task
    assert doubling.run(job("tests.tasks:async_add", "[2, 3]")).result == "5"
    broken = doubling.run(job("tests.tasks:noop"))  # None * 2: the around_task raises
    assert broken.outcome == "error" and "NoneType" in (broken.error or "")


class Counting:
    made = 0

    def __init__(self) -> None:
        Counting.made += 1

    def before_task(self, task: Any) -> None:
        pass


def test_a_class_is_instantiated_once_per_process_and_an_instance_used_as_is(
    recorded: Path,
) -> None:
    config = load_config({"middleware": ["tests.unit.test_middleware:Counting"]})
    first = middleware.chain(config)
    again = middleware.chain(load_config({"middleware": ["tests.unit.test_middleware:Counting"]}))
    assert first is again and Counting.made == 1
    middleware.forget_instances()  # what a new worker does after the fork
    middleware.chain(config)
    assert Counting.made == 2
    mine = Counting()
    middleware.add_middleware(mine)
    try:
        added = middleware.chain(config).before_task
        assert [h.__self__ for _, h in added][-1] is mine  # type: ignore[attr-defined]
    finally:
        middleware._added.remove(mine)
        middleware.forget_instances()


class Broken:
    def __init__(self) -> None:
        raise RuntimeError("no license key")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("nowhere:X", "middleware: 'nowhere:X' (runtime): cannot import module 'nowhere'"),
        ("tests.hooks_support", "is not a task path of the form module:function"),
        (
            "tests.unit.test_middleware:Broken",
            "middleware: tests.unit.test_middleware:Broken() raised RuntimeError: no license key",
        ),
    ],
)
def test_a_bad_middleware_is_a_config_error(path: str, message: str) -> None:
    config = load_config({}).replace(middleware=[path])
    with pytest.raises(ConfigError) as caught:
        middleware.chain(config)
    assert message in str(caught.value)
