"""Settings: precedence, sources, every broken input is one ConfigError, parsing properties."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qsup.errors import ConfigError
from qsup.settings import (
    SETTINGS,
    Config,
    default_of,
    example_toml,
    load_config,
    setting_type,
)

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "queue.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults_when_nothing_is_set(tmp_path):
    cfg = load_config({}, config_file=write(tmp_path, ""), environ={})
    assert cfg.max_retries == 3
    assert cfg.task_timeout == 300.0
    assert cfg.notify_channel == "queue_new_task"
    assert cfg.use_postgresql_notify is True
    assert all(cfg.sources[f.name] == "default" for f in SETTINGS)


def test_precedence_flag_over_env_over_toml_over_default(tmp_path):
    path = write(tmp_path, "max_retries = 5\ntask_timeout = 10\n\nmax_workers = 3\n")
    env = {"QUEUE_TASK_TIMEOUT": "20", "QUEUE_MAX_WORKERS": "6"}
    cfg = load_config({"max_workers": 9}, config_file=path, environ=env)
    assert (cfg.max_retries, cfg.task_timeout, cfg.max_workers) == (5, 20.0, 9)
    assert cfg.sources["max_retries"] == f"file {path}:1"
    assert cfg.sources["task_timeout"] == "env QUEUE_TASK_TIMEOUT"
    assert cfg.sources["max_workers"] == "flag --workers"
    assert cfg.sources["polling_interval"] == "default"


def test_toml_source_names_the_line(tmp_path):
    path = write(tmp_path, '# comment\n\nnotify_channel = "wake"\n')
    cfg = load_config({}, config_file=path, environ={})
    assert cfg.notify_channel == "wake"
    assert cfg.sources["notify_channel"] == f"file {path}:3"


def test_queue_database_url_wins_over_database_url():
    env = {"QUEUE_DATABASE_URL": "postgresql://a/x", "DATABASE_URL": "postgresql://b/y"}
    cfg = load_config({}, environ=env, config_file=None)
    assert cfg.database_url == "postgresql://a/x"
    assert cfg.sources["database_url"] == "env QUEUE_DATABASE_URL"


def test_qsup_config_env_names_the_file(tmp_path):
    path = write(tmp_path, "max_retries = 7\n")
    cfg = load_config({}, environ={"QSUP_CONFIG": path})
    assert cfg.max_retries == 7


@pytest.mark.parametrize(
    "text, needle",
    [
        ("max_retrys = 3\n", "did you mean 'max_retries'"),
        ('max_workers = "four"\n', "max_workers"),
        ("max_workers = 0\n", "below the minimum 1"),
        ("task_timeout = -1\n", "task_timeout"),
        ("task_timeout = nan\n", "finite"),
        ('use_postgresql_notify = "yes"\n', "boolean"),
        ('queues = "a,b"\n', "list of strings"),
        ("min_workers = 5\nmax_workers = 2\n", "greater than max_workers"),
        ("max_workers = [\n", "line 1"),
        ("a = = 1\n", "column"),
        ('log_format = "xml"\n', "log_format"),
        ('log_level = "LOUD"\n', "log_level"),
        ("schedules = 3\n", "schedules"),
        ("port = 70000\n", "above the maximum"),
    ],
)
def test_broken_toml_is_one_line_config_error(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config({}, config_file=path, environ={})
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"QUEUE_USE_POSTGRESQL_NOTIFY": "maybe"}, "QUEUE_USE_POSTGRESQL_NOTIFY"),
        ({"QUEUE_MAX_WORKERS": "0"}, "below the minimum"),
        ({"QUEUE_MAX_WORKERS": "many"}, "an integer"),
        ({"QUEUE_TASK_TIMEOUT": "-5"}, "QUEUE_TASK_TIMEOUT"),
        ({"QUEUE_POLLING_INTERVAL": "inf"}, "finite"),
        ({"QUEUE_MIN_WORKERS": "4", "QUEUE_MAX_WORKERS": "2"}, "env QUEUE_MIN_WORKERS"),
    ],
)
def test_broken_env_is_one_line_config_error(env, needle):
    with pytest.raises(ConfigError) as info:
        load_config({}, environ=env, config_file=None)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_unreadable_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config({}, config_file=str(tmp_path / "missing.toml"), environ={})
    bad = tmp_path / "latin.toml"
    bad.write_bytes(b'notify_channel = "\xff"\n')
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config({}, config_file=str(bad), environ={})


def test_unknown_key_names_its_line(tmp_path):
    path = write(tmp_path, "max_retries = 1\nworkerz = 2\n")
    with pytest.raises(ConfigError, match=r"workerz: unknown setting in file .*:2"):
        load_config({}, config_file=path, environ={})


def test_bad_flag_value_names_the_flag():
    with pytest.raises(ConfigError, match="flag --workers"):
        load_config({"max_workers": 0}, environ={}, config_file=None)


def test_schedule_sources_name_their_header_lines(tmp_path):
    path = write(
        tmp_path, 'max_retries = 1\n\n[[schedules]]\nname = "a"\n\n[[schedules]]\nname = "b"\n'
    )
    cfg = load_config({}, config_file=path, environ={})
    assert [s["name"] for s in cfg.schedules] == ["a", "b"]
    assert cfg.sources["schedules[0]"] == f"file {path}:3"
    assert cfg.sources["schedules[1]"] == f"file {path}:6"


def test_committed_example_config_is_the_generated_one():
    assert (ROOT / "config" / "queue.toml").read_text(encoding="utf-8") == example_toml()


def test_example_config_uncommented_gives_the_defaults(tmp_path):
    lines = [
        line[2:].split("  #")[0]
        for line in example_toml().splitlines()
        if line.startswith("# ")
        and " = " in line
        and "[[" not in line
        and not line.startswith("# name")
        and line[2:].split(" ")[0] in {f.name for f in SETTINGS}
    ]
    cfg = load_config({}, config_file=write(tmp_path, "\n".join(lines)), environ={})
    for f in SETTINGS:
        if f.name != "max_workers":
            assert getattr(cfg, f.name) == default_of(f), f.name
    assert cfg.max_workers == 4


# --- properties --------------------------------------------------------------------------------

INT_SETTINGS = [f for f in SETTINGS if setting_type(f.name) is int]
FLOAT_SETTINGS = [f for f in SETTINGS if setting_type(f.name) is float]


def _in_bounds(f, value):
    low, high = f.metadata["min"], f.metadata["max"]
    return (low is None or value >= low) and (high is None or value <= high)


def _valid(f, value):
    """Exactly when the loader must accept ``value`` for ``f`` alone: in bounds, and
    min_workers <= max_workers with the other one at its default."""
    defaults = Config()
    if f.name == "min_workers" and value > defaults.max_workers:
        return False
    if f.name == "max_workers" and value < defaults.min_workers:
        return False
    return _in_bounds(f, value)


@given(st.sampled_from(INT_SETTINGS), st.integers(-(10**6), 10**6))
def test_env_integers_parse_or_fail_cleanly(f, value):
    env = {f.metadata["env"][0]: f"  {value} "}
    try:
        cfg = load_config({}, environ=env, config_file=None)
    except ConfigError as exc:
        assert f.name in str(exc)
        assert not _valid(f, value)
    else:
        assert _valid(f, value)
        assert getattr(cfg, f.name) == value
        assert cfg.sources[f.name] == f"env {f.metadata['env'][0]}"


@given(
    st.sampled_from(FLOAT_SETTINGS),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9),
)
def test_env_floats_round_trip(f, value):
    env = {f.metadata["env"][0]: repr(value)}
    try:
        cfg = load_config({}, environ=env, config_file=None)
    except ConfigError as exc:
        assert not _in_bounds(f, value)
        assert f.metadata["env"][0] in str(exc)
    else:
        assert getattr(cfg, f.name) == value


@given(st.text(min_size=0, max_size=12))
def test_env_booleans_accept_only_known_spellings(text):
    env = {"QUEUE_USE_POSTGRESQL_NOTIFY": text}
    known = {
        "1": True,
        "true": True,
        "yes": True,
        "on": True,
        "0": False,
        "false": False,
        "no": False,
        "off": False,
    }
    try:
        cfg = load_config({}, environ=env, config_file=None)
    except ConfigError as exc:
        assert text.strip().lower() not in known
        assert "QUEUE_USE_POSTGRESQL_NOTIFY" in str(exc)
    else:
        assert cfg.use_postgresql_notify is known[text.strip().lower()]


@given(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), max_size=5))
def test_env_lists_split_on_commas(names):
    cfg = load_config({}, environ={"QUEUE_QUEUES": " , ".join(names)}, config_file=None)
    assert cfg.queues == names


@given(
    st.sampled_from(FLOAT_SETTINGS + INT_SETTINGS),
    st.one_of(
        st.integers(-(10**4), 10**4),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(alphabet="ab 1.-", max_size=5),
        st.booleans(),
        st.lists(st.integers(), max_size=2),
    ),
)
def test_toml_values_are_checked_by_type_and_bounds(tmp_path_factory, f, value):
    import json

    literal = {True: "true", False: "false"}.get(value) if isinstance(value, bool) else None
    if literal is None:
        if isinstance(value, float) and not math.isfinite(value):
            literal = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        else:
            literal = json.dumps(value)
    path = tmp_path_factory.mktemp("toml") / "q.toml"
    path.write_text(f"{f.name} = {literal}\n", encoding="utf-8")
    kind = setting_type(f.name)
    ok_type = not isinstance(value, bool) and (
        isinstance(value, int)
        or (kind is float and isinstance(value, float) and math.isfinite(value))
    )
    try:
        cfg = load_config({}, config_file=str(path), environ={})
    except ConfigError as exc:
        assert f.name in str(exc)
        assert not ok_type or not _valid(f, value)
    else:
        assert ok_type and _valid(f, value)
        assert getattr(cfg, f.name) == value
        assert cfg.sources[f.name] == f"file {path}:1"


@pytest.mark.parametrize("prefix", ["qsup", "/", "/qsup/", "/a b", ""])
def test_bad_http_prefix_is_refused(prefix):
    with pytest.raises(ConfigError, match="http_prefix"):
        load_config({}, environ={"QSUP_HTTP_PREFIX": prefix})
