"""Pure parts of short ids, piped tables and URL checks."""

from __future__ import annotations

import uuid

import pytest

from qsup.cli.common import plain_table
from qsup.db.connect import redact, url_problem
from qsup.errors import ConfigError
from qsup.task_ids import IdPart, ambiguous, parse_task_id, short_id

ID = uuid.UUID("01a237be-77c4-755d-ae36-49d8ed869458")


def test_short_id_is_the_random_last_group():
    assert short_id(ID) == "49d8ed869458" == short_id(str(ID))


@pytest.mark.parametrize("text", [str(ID), str(ID).replace("-", ""), str(ID).upper(), f" {ID} "])
def test_a_full_id_parses_to_itself(text):
    assert parse_task_id(text) == ID


def test_a_part_is_its_digits_and_its_prefix_range():
    part = parse_task_id("01A2-37be")
    assert part == IdPart("01a237be")
    assert isinstance(part, IdPart)
    params = part.params()
    assert params["low"] == uuid.UUID("01a237be-0000-0000-0000-000000000000")
    assert params["high"] == uuid.UUID("01a237be-ffff-ffff-ffff-ffffffffffff")


@pytest.mark.parametrize("text", ["", "abc", "----", "zzzz", "0" * 33, "12 34", "abcd\x00"])
def test_what_is_not_an_id_is_a_config_error(text):
    with pytest.raises(ConfigError, match="expected hex digits"):
        parse_task_id(text)


def test_ambiguous_names_the_count_and_longer_forms():
    other = uuid.UUID("01a237be-77c4-755d-ae36-000000000001")
    short = str(ambiguous("01a2", 5, [ID, other]))
    assert short == (
        "task id '01a2' matches 5 tasks: type more digits, such as the short id"
        " (49d8ed869458, 000000000001, ...)"
    )
    long = str(ambiguous("01a237be77c4", 2, [ID, other]))
    assert f"such as the full id ({ID}, {other})" in long


def test_plain_table_aligns_and_keeps_every_value():
    lines = plain_table(("a", "bb"), [("long value", "x"), ("y", "one\ntwo")], title="t")
    assert lines == ["t", "a           bb", "long value  x", "y           one", "            two"]
    assert plain_table(("a",), []) == ["a"]


def test_redact_and_url_problem():
    assert redact("postgresql://u:secret@h/x") == "postgresql://u:***@h/x"
    assert redact("host=h password='a b' port=1") == "host=h password=*** port=1"
    assert url_problem("postgresql://u@h:5432,h2:5433/x") is None
    assert url_problem("postgresql://h:99999/x") == "port '99999' is not a number from 1 to 65535"
    assert "missing" in (url_problem("nonsense") or "")
