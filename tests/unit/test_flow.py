"""Flow control's pure parts: rates, the [limits] tables, claim sizes, retry times."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from qsup.errors import ConfigError, TaskDefinitionError
from qsup.flow import Limits, Rate, concurrency_key, describe, limits_from_toml, parse_rate
from qsup.protocol import Job
from qsup.settings import Config
from qsup.supervisor import policy
from qsup.supervisor.flow import Gate
from qsup.supervisor.ledger import Ledger
from qsup.supervisor.policy import next_limited_try, room_in_workers


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("10/second", Rate(10, 1.0)),
        ("100/minute", Rate(100, 60.0)),
        (" 5000 / hours ", Rate(5000, 3600.0)),
    ],  # fmt: skip
)
def test_rates_parse(text, rate):
    assert parse_rate(text) == rate
    assert str(rate) in ("10/second", "100/minute", "5000/hour")


@pytest.mark.parametrize("text", ["", "10", "0/second", "-1/minute", "1.5/second", "5/day", 5])
def test_bad_rates_are_refused(text):
    with pytest.raises(ValueError, match="N/second|between"):
        parse_rate(text)


def where(key: str) -> str:
    return f"file q.toml ({key})"


def test_limits_tables_are_read():
    table = {"pay": {"concurrency": 5}, "mail": {"rate": "100/minute", "key_concurrency": 1}}
    assert limits_from_toml(table, where) == {
        "pay": Limits(concurrency=5),
        "mail": Limits(rate=Rate(100, 60.0), key_concurrency=1),
    }
    assert describe(Limits(5, Rate(2, 1.0))) == "concurrency=5, rate=2/second"
    assert describe(Limits()) == "-" and Limits().empty


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"pay": {"concurency": 5}}, r"limits\.pay\.concurency: unknown limit in file q\.toml"),
        ({"pay": {"concurrency": 0}}, r"limits\.pay\.concurrency: invalid value 0 from file"),
        ({"pay": {"concurrency": True}}, "expected a whole number"),
        ({"pay": {"key_concurrency": "2"}}, "expected a whole number"),
        ({"pay": {"rate": "2/week"}}, r"limits\.pay\.rate: invalid value '2/week'"),
        ({"pay": 3}, r"limits\.pay: expected a table"),
        ({"bad name": {"concurrency": 1}}, "invalid queue name"),
        ([], "expected \\[limits.QUEUE\\] tables"),
    ],
)
def test_bad_limits_name_the_key_the_value_and_the_source(table, message):
    with pytest.raises(ConfigError, match=message):
        limits_from_toml(table, where)


def test_room_counts_what_workers_can_start_now_and_nothing_ahead():
    assert room_in_workers([1, 1, 0], spare=0) == 1  # only the idle worker
    assert room_in_workers([1, 1], spare=2) == 2  # and workers still to start
    assert room_in_workers([8, 3], spare=0) == 0  # never behind a running job


def test_next_try_follows_the_claims_status():
    assert next_limited_try(None, 10.0, 0.25) == math.inf
    assert next_limited_try(0.0, 10.0, 0.25) == 10.0
    assert next_limited_try(-1.0, 10.0, 0.25) == 10.25
    assert next_limited_try(2.5, 10.0, 0.25) == 12.5


def test_concurrency_key_from_the_option_or_the_tasks_callable():
    def by_tenant(tenant, **_):
        return f"tenant:{tenant}"

    assert concurrency_key("x", by_tenant, (1,), {}) == "x"
    assert concurrency_key(None, by_tenant, (7,), {"n": 1}) == "tenant:7"
    assert concurrency_key(None, None, (7,), {}) is None
    with pytest.raises(TaskDefinitionError, match="must be a string"):
        concurrency_key(42, None, (), {})


@pytest.mark.parametrize("key", ["k" * 256, "a\x00b", "a\ud800"])
def test_concurrency_key_fits_the_index_and_text(key):
    assert concurrency_key("k" * 255, None, (), {}) == "k" * 255
    with pytest.raises(TaskDefinitionError, match="at most 255 characters, without NUL"):
        concurrency_key(key, None, (), {})


def _job(task_id: str, queue: str = "pay") -> Job:
    return Job(task_id, "t:x", "[]", "{}", 60.0, 1, 3, "{}", queue, None, None)


def _gate_holding(*held: str) -> tuple[Gate, Ledger]:
    """A gate that claimed ``held`` (slot holders, with workers) in the limited queue "pay",
    and one task "b" ahead of them."""
    gate, ledger = Gate(Config()), Ledger(Counter())
    gate.next_try = {"pay": math.inf}
    ledger.claimed([_job(i) for i in held])
    ledger.hand_out(1, len(held))
    ledger.ahead.append(_job("b"))
    gate.held = {i: "pay" for i in (*held, "b")}
    return gate, ledger


def _end(ledger: Ledger, task_id: str) -> None:
    ledger.finish(1, task_id)
    ledger.outbox.release([task_id], 0.0)  # any outcome: the task ended, not yet written


def test_an_ended_slot_holder_hands_its_slot_to_the_task_ahead():
    gate, ledger = _gate_holding("a", "c")
    gate.seconds["pay"] = 0.01  # short tasks: reached ahead
    assert gate._aheads(["pay"], ledger, 2) == [3]  # two slots here, one of four successors
    _end(ledger, "a")
    gate.hand_on("a", 0.01, ledger, 5.0)
    assert [j.id for j in ledger.buffer] == ["b"] and not ledger.ahead
    assert ledger.outbox.handed_on == ["b"]  # written with a's outcome
    assert gate.next_try["pay"] == 5.0  # claim a new successor now
    assert gate._ended(ledger) == []  # a's slot is b's: not free
    ledger.hand_out(1, 1)
    _end(ledger, "b")
    assert sorted(gate._ended(ledger)) == ["a", "b"]  # b ended too: the slot is free


def test_a_slot_holder_of_another_queue_hands_nothing_on():
    gate, ledger = _gate_holding("a")
    gate.held["x"] = "other"
    gate.hand_on("x", 0.01, ledger, 1.0)
    gate.hand_on("unknown", 0.01, ledger, 1.0)
    assert not ledger.buffer and [j.id for j in ledger.ahead] == ["b"]
    assert not ledger.outbox.handed_on


def test_a_queue_of_long_or_unknown_tasks_is_not_claimed_ahead():
    gate, ledger = _gate_holding("a", "c")
    assert gate._aheads(["pay"], ledger, 3) == [-3]  # nothing ran here yet: off
    ledger.ahead.clear()
    gate.hand_on("c", 30.0, ledger, 1.0)  # a long one ran
    assert gate.seconds["pay"] == 30.0 and gate._aheads(["pay"], ledger, 0) == [-1]
    gate.seconds["pay"] = 0.05
    assert gate._aheads(["pay"], ledger, 0) == [4]  # short: two per slot held


@pytest.mark.parametrize(
    ("average", "reaches"), [(None, False), (0.0, True), (0.99, True), (1.0, False), (60.0, False)]
)
def test_reaching_ahead_is_for_short_tasks_only(average, reaches):
    assert policy.reaches_ahead(average) is reaches
