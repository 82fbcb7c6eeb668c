"""The operator's task filter: time words, globs, states, and the id range a window is."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from uuid_utils import uuid7

from qsup.errors import ConfigError
from qsup.task_filter import id_at, like_pattern, parse_filter, parse_moment, parse_states

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "ago"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("1h", 3600),
        ("2d", 2 * 86400),
        ("1w", 7 * 86400),
        ("1.5h", 5400),
    ],
)
def test_a_duration_is_that_long_ago(text, ago):
    assert parse_moment(text, "--since", NOW) == NOW - timedelta(seconds=ago)


def test_an_iso_time_keeps_its_offset_and_a_naive_one_is_local():
    assert parse_moment("2026-12-07T10:00+02:00", "--since") == datetime(
        2026, 12, 7, 8, 0, tzinfo=UTC
    )
    assert parse_moment("2026-12-07", "--until") == datetime(2026, 12, 7).astimezone(UTC)


@pytest.mark.parametrize("text", ["yesterday", "1y", "-1h", "h", ""])
def test_a_bad_moment_names_the_option_and_the_value(text):
    with pytest.raises(ConfigError, match=f"--since {text!r}: expected a duration ago"):
        parse_moment(text, "--since", NOW)


def test_a_glob_becomes_a_like_pattern_with_like_characters_escaped():
    assert like_pattern("app.tasks:send_*") == "app.tasks:send\\_%"
    assert like_pattern("a?c%") == "a_c\\%"
    assert like_pattern("back\\slash") == "back\\\\slash"


def test_states_are_checked_against_the_commands_choices():
    assert parse_states(["failed,cancelled", "failed"], ("failed", "cancelled"), ()) == (
        "failed",
        "cancelled",
    )
    assert parse_states(None, ("a", "b"), ("a",)) == ("a",)
    with pytest.raises(ConfigError, match="--state 'running': choose from failed, cancelled"):
        parse_states(["running"], ("failed", "cancelled"), ())


def test_a_time_window_is_the_range_of_uuid7_ids_enqueued_in_it():
    before, inside, after = str(uuid7()), None, None
    start = datetime.now(UTC) + timedelta(milliseconds=5)
    while datetime.now(UTC) < start + timedelta(milliseconds=5):
        inside = str(uuid7())
    end = datetime.now(UTC) + timedelta(milliseconds=5)
    while datetime.now(UTC) < end + timedelta(milliseconds=5):
        after = str(uuid7())
    low, high = id_at(start), id_at(end)
    assert uuid.UUID(before) < low <= uuid.UUID(str(inside)) < high <= uuid.UUID(str(after))


def test_the_page_cursor_and_until_give_the_lower_of_the_two_bounds():
    cursor = uuid.UUID(int=5 << 80)
    chosen = parse_filter(until="2026-12-07T12:00+00:00", queue=["a,b", "a"], name="x*")
    params = chosen.params()
    assert params["high"] == id_at(NOW) and params["queues"] == ["a", "b"]
    assert params["pattern"] == "x%" and params["limit"] is None
    assert params["low"] == uuid.UUID(int=0) and params["queues"] == ["a", "b"]
    assert replace(chosen, before=cursor).params()["high"] == cursor
    assert "of queue a/b named x*" in chosen.describe()
