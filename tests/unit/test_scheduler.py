"""Schedules: validation of [[schedules]] tables and the pure tick planning (no clock inside)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qsup import scheduler
from qsup.errors import ConfigError
from qsup.scheduler import Schedule, parse_schedule, plan
from qsup.settings import load_config

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
EVERY_MINUTE = Schedule(name="m", cron="* * * * *", task="tests.tasks:noop")
EVERY_SECOND = Schedule(name="s", cron="* * * * * *", task="tests.tasks:noop")
GOOD = {"name": "n", "cron": "*/5 * * * *", "task": "tests.tasks:add", "args": [1, 2]}


def test_parse_fills_defaults():
    spec = parse_schedule(GOOD, "file q.toml:3")
    assert spec.args == (1, 2)
    assert spec.timezone == "UTC"
    assert spec.on_missed == "run_once"
    assert spec.queue is None


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"cron": "61 * * * *"}, "cron = '61 * * * *'"),
        ({"cron": "* * *"}, "invalid cron expression"),
        ({"cron": 5}, "cron"),
        ({"task": "nocolon"}, "task = 'nocolon'"),
        ({"args": "x"}, "args"),
        ({"kwargs": [1]}, "kwargs"),
        ({"priority": "high"}, "priority"),
        ({"timezone": "Mars/Olympus"}, "time zone"),
        ({"on_missed": "always"}, "on_missed"),
        ({"name": ""}, "name"),
        ({"crон": "x"}, "unknown key"),
    ],
)
def test_invalid_schedule_is_one_line_naming_schedule_key_value_source(change, needle):
    with pytest.raises(ConfigError) as info:
        parse_schedule({**GOOD, **change}, "file q.toml:7", 2)
    message = str(info.value)
    assert needle in message
    assert "file q.toml:7" in message
    assert "\n" not in message


def test_validate_schedules_from_toml_names_file_and_line(tmp_path):
    path = tmp_path / "q.toml"
    path.write_text(
        '[[schedules]]\nname = "ok"\ncron = "* * * * *"\ntask = "m:f"\n\n'
        '[[schedules]]\nname = "bad"\ncron = "* * 99 * *"\ntask = "m:f"\n'
    )
    cfg = load_config({}, config_file=str(path), environ={})
    with pytest.raises(
        ConfigError,
        match=rf"schedule 'bad': cron = '\* \* 99 \* \*' from file "
        rf"{path}:8",  # the line of its cron key
    ):
        scheduler.validate_schedules(cfg)


def test_duplicate_names_are_refused(tmp_path):
    path = tmp_path / "q.toml"
    path.write_text(
        '[[schedules]]\nname = "a"\ncron = "* * * * *"\ntask = "m:f"\n'
        '[[schedules]]\nname = "a"\ncron = "* * * * *"\ntask = "m:f"\n'
    )
    cfg = load_config({}, config_file=str(path), environ={})
    with pytest.raises(ConfigError, match="defined twice"):
        scheduler.validate_schedules(cfg)


def test_python_registration(monkeypatch):
    monkeypatch.setattr(scheduler, "_registry", {})
    from tests.tasks import add

    spec = scheduler.schedule("py", "0 * * * *", add, args=[1, 2], queue="q")
    assert spec.task == "tests.tasks:add"
    names = [
        s.name for s in scheduler.validate_schedules(load_config({}, environ={}, config_file=None))
    ]
    assert names == ["py"]
    with pytest.raises(ConfigError):
        scheduler.schedule("bad", "nope", add)


def test_new_schedule_starts_at_next_tick_without_firing():
    todo = plan(EVERY_MINUTE, None, T0 + timedelta(seconds=10), grace=60)
    assert todo is not None
    assert todo.fire == ()
    assert todo.next_fire == T0 + timedelta(minutes=1)


def test_nothing_due_before_next_fire():
    assert plan(EVERY_MINUTE, T0 + timedelta(minutes=1), T0 + timedelta(seconds=59), 60) is None


def test_due_tick_fires_once_and_moves_on():
    todo = plan(EVERY_MINUTE, T0, T0 + timedelta(seconds=2), grace=60)
    assert todo is not None
    assert todo.fire == (T0,)
    assert todo.next_fire == T0 + timedelta(minutes=1)


def test_every_tick_within_grace_fires():
    todo = plan(EVERY_SECOND, T0, T0 + timedelta(seconds=4.5), grace=60)
    assert todo is not None
    assert todo.fire == tuple(T0 + timedelta(seconds=i) for i in range(5))
    assert todo.next_fire == T0 + timedelta(seconds=5)


def test_missed_ticks_run_once_or_are_skipped():
    now = T0 + timedelta(hours=5, seconds=30)
    run_once = plan(
        EVERY_MINUTE.__class__(**{**EVERY_MINUTE.__dict__, "cron": "0 * * * *"}),
        T0 + timedelta(hours=1),
        now,
        grace=20,
    )
    assert run_once is not None
    assert run_once.fire == (T0 + timedelta(hours=5),)
    hourly_skip = Schedule(name="h", cron="0 * * * *", task="m:f", on_missed="skip")
    skipped = plan(hourly_skip, T0 + timedelta(hours=1), now, grace=20)
    assert skipped is not None
    assert skipped.fire == ()
    assert skipped.next_fire == T0 + timedelta(hours=6)


def test_run_once_does_not_add_a_missed_run_when_a_recent_tick_fires():
    hourly = Schedule(name="h", cron="0 * * * *", task="m:f")
    todo = plan(hourly, T0, T0 + timedelta(hours=3, seconds=5), grace=60)
    assert todo is not None
    assert todo.fire == (T0 + timedelta(hours=3),)


def test_changed_cron_reanchors_a_far_next_fire():
    todo = plan(EVERY_MINUTE, T0 + timedelta(days=300), T0, grace=60)
    assert todo is not None
    assert todo.fire == ()
    assert todo.next_fire == T0 + timedelta(minutes=1)


def test_timezone_is_respected():
    paris = Schedule(name="p", cron="0 9 * * *", task="m:f", timezone="Europe/Paris")
    # 1 March: Paris is UTC+1, so 09:00 Paris is 08:00 UTC
    assert paris.next_after(datetime(2024, 3, 1, 0, 0, tzinfo=UTC)) == datetime(
        2024, 3, 1, 8, 0, tzinfo=UTC
    )
    # 1 July: UTC+2
    assert paris.next_after(datetime(2024, 7, 1, 0, 0, tzinfo=UTC)) == datetime(
        2024, 7, 1, 7, 0, tzinfo=UTC
    )


def test_latest_at_or_before_includes_an_exact_tick():
    assert EVERY_MINUTE.latest_at_or_before(T0) == T0
    assert EVERY_MINUTE.latest_at_or_before(T0 + timedelta(seconds=59.5)) == T0


@given(st.integers(0, 10_000), st.integers(0, 600), st.sampled_from(["skip", "run_once"]))
def test_plan_properties(start_offset, elapsed, on_missed):
    spec = Schedule(name="x", cron="*/7 * * * * *", task="m:f", on_missed=on_missed)
    next_fire = spec.next_after(T0 + timedelta(seconds=start_offset))
    now = next_fire + timedelta(seconds=elapsed, milliseconds=250)
    todo = plan(spec, next_fire, now, grace=60)
    assert todo is not None
    assert todo.next_fire > now
    assert list(todo.fire) == sorted(set(todo.fire))
    assert all(next_fire <= t <= now for t in todo.fire)
    recent = [t for t in todo.fire if t > now - timedelta(seconds=60)]
    # every tick in the grace window fires; at most one older tick, and only with run_once
    expected_recent = [
        t
        for t in spec.ticks(
            max(next_fire - timedelta(microseconds=1), now - timedelta(seconds=60)), now
        )
    ]
    assert recent == expected_recent
    assert len(todo.fire) - len(recent) <= (1 if on_missed == "run_once" else 0)
