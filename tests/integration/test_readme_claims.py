"""Every name the README gives exists (spec §14): metric names (in a real ``/metrics`` scrape),
span attributes (on real spans), settings, their environment names and flags (the settings
table, and the other way round), ``QUEUE_*``/``QSUP_*`` names, example paths and modules,
``qsup[...]`` extras, and the test command (``bash .ci/run``). A README that names something
that is not there fails here, not in a user's hands."""

from __future__ import annotations

import re
import tomllib
import warnings
from pathlib import Path
from typing import Any

import pytest
import typer
from prometheus_client.parser import text_string_to_metric_families

from qsup.settings_table import BY_NAME
from tests import tasks

with warnings.catch_warnings():  # starlette 1.x suggests httpx2; httpx is what we install
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SOURCES = "\n".join(
    p.read_text() for d in ("src", "tests", "scripts", ".ci") for p in (ROOT / d).rglob("*")
    if p.is_file() and p.suffix in (".py", ".sql", "") and "__pycache__" not in p.parts
)  # fmt: skip


def _alternatives(token: str) -> list[str]:
    """``qsup_workers_active|idle|max`` and ``qsup_tasks_completed|failed_total`` spelled out:
    the first name's last word varies, the last one's ``_total`` applies to all."""
    first, *rest = token.split("|")
    if not rest:
        return [first]
    head, _, word = first.rpartition("_")
    suffix = "_" + rest[-1].split("_", 1)[1] if "_" in rest[-1] else ""
    words = [word, *(r.split("_", 1)[0] if suffix else r for r in rest)]
    return [f"{head}_{w}{suffix}" for w in words]


def readme_metric_names() -> set[str]:
    return {n for t in re.findall(r"qsup_[a-z_0-9|]+[a-z0-9]", README) for n in _alternatives(t)}


@pytest.fixture
def scrape(db_url: str, conn: Any, queue: Any) -> set[str]:
    """Family and sample names of a real scrape with a server, its counters, a finished task
    and a limited queue, so that every family has samples."""
    from qsup import flow_store, series
    from qsup.flow import Limits, parse_rate
    from qsup.http.app import create_app
    from qsup.settings import Config

    counters = '{"completed": 1, "failed": 1, "retried": 1, "claimed": 2, "quarantined": 1,'
    counters += ' "recycled:max_tasks": 1, "crashed:SIGKILL": 1}'
    conn.execute(
        "INSERT INTO queued_task_workers (server_name, max_workers, active_workers, idle_workers,"
        " is_running, counters) VALUES ('host:1', 2, 1, 1, true, %s)",
        (counters,),
    )
    ref = queue.add_task(tasks.noop)
    conn.execute(
        "UPDATE queued_tasks SET state = 'completed', date_started = now() - interval '1 second',"
        " date_done = now() WHERE id = %s",
        (ref.task_id,),
    )
    one_bucket = [1] + [0] * (series.BUCKETS - 1)  # the series the histograms are read from
    conn.execute(
        "INSERT INTO queued_task_minutes (minute, queue, name, completed, run_buckets,"
        " wait_buckets, cpu_buckets) VALUES (date_trunc('minute', now()), 'default',"
        " 'tests.tasks:noop', 1, %s, %s, %s)",
        (one_bucket, one_bucket, one_bucket),
    )
    limits = Limits(concurrency=2, rate=parse_rate("5/second"))
    flow_store.set_runtime_limits(conn, "mail", limits, clear=False, channel=None)
    flow_store.set_paused(conn, "mail", True, None)
    with TestClient(create_app(Config(database_url=db_url), db_url)) as client:
        text = client.get("/metrics").text
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def test_every_metric_the_readme_names_is_scraped(scrape: set[str]) -> None:
    named = readme_metric_names()
    assert {"qsup_tasks_quarantined", "qsup_workers_crashed_total"} <= named  # the parsing
    others = {n for n in named - scrape if re.search(rf"(def|FUNCTION|TABLE)\s+{n}\b", SOURCES)}
    assert named - scrape - others == set()  # before: qsup_tasks_quarantined was not exported
    # a SQL function, a Python one, a table
    assert others == {"qsup_claim_limited", "qsup_lifespan", "qsup_functions"}


def test_every_span_attribute_the_readme_names_is_on_the_spans() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from qsup.otel import Tracing
    from qsup.task_view import Task

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing()
    tracing.tracer = provider.get_tracer("qsup")  # not the global provider: other tests own it
    task = Task("01900000-0000-7000-8000-000000000000", "app:f", "mail", 1, [], {}, {})
    tracing.on_enqueue(task)
    tracing.around_task(task, lambda: None)
    producer, consumer = exporter.get_finished_spans()
    named: set[str] = set()
    for token in re.findall(r"`((?:qsup\.task|messaging)\.[a-z_.{},]+)`", README):
        head, _, braces = token.partition("{")
        words = braces.rstrip("}").split(",") if braces else [""]
        named.update(head + word for word in words)
    assert {"qsup.task.id", "qsup.task.queue", "messaging.message.id"} <= named
    assert named - set(consumer.attributes or {}) == set()  # before: no qsup.task.id, .queue
    assert named - {"qsup.task.outcome"} - set(producer.attributes or {}) == set()


def _settings_table() -> list[list[str]]:
    section = README[README.index("| setting (TOML key) | environment | flag | default |") :]
    rows = []
    for line in section.splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _serve_options() -> set[str]:
    from qsup.cli.serve_cmd import serve

    group = typer.Typer()
    group.command()(serve)
    group.command("other")(lambda: None)
    command = typer.main.get_command(group).commands["serve"]  # type: ignore[attr-defined]
    return {opt for p in command.params for opt in p.opts}


def test_the_settings_table_matches_the_settings() -> None:
    keys: set[str] = set()
    options = _serve_options()
    for key_cell, env_cell, flag_cell, _ in _settings_table():
        names = [k.strip() for k in key_cell.split("/")]
        envs: list[str] = []
        for env in re.split(r"\s*/\s*|,\s*", env_cell):
            envs.append(envs[-1].rsplit("_", 1)[0] + env if env.startswith("_") else env)
        for name in names:
            assert name in BY_NAME, f"README setting {name!r} is not in settings_table"
            declared = BY_NAME[name].metadata["env"]
            assert set(declared) <= set(envs) or any(e in envs for e in declared), name
        known = {e for n in names for e in BY_NAME[n].metadata["env"]}
        assert set(envs) <= known, (names, envs)
        flags = {f.strip() for f in flag_cell.split("/") if f.strip()}
        assert flags <= options, flags - options
        keys.update(names)
    assert set(BY_NAME) - keys == set()  # every setting is in the table


def test_every_environment_name_the_readme_gives_exists() -> None:
    settings_env = {e for f in BY_NAME.values() for e in f.metadata["env"]}
    named = set(re.findall(r"\b(?:QUEUE|QSUP)_[A-Z0-9_]*[A-Z0-9]\b", README))
    unknown = {n for n in named - settings_env if f'"{n}"' not in SOURCES}
    assert unknown == set()  # read by qsup, a test or a script, else made up


def test_every_example_path_module_and_extra_exists() -> None:
    for path in re.findall(r"\bexamples/[\w/.-]*\w/?", README):
        assert (ROOT / path).exists(), path
    for module in re.findall(r"\bexamples(?:\.[a-z_]+)+", README):
        file = ROOT / module.replace(".", "/")
        assert file.with_suffix(".py").exists() or (file / "__init__.py").exists(), module
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    named = set(re.findall(r"qsup\[(\w+)\]", README))
    assert "fastapi" in named and named <= set(extras), named - set(extras)


def test_the_readme_test_command_is_ci_run() -> None:
    """One command installs what the suite needs (Chromium, the pinned tools) and runs it."""
    opening = README[: README.index("## A first task")]
    blocks = re.findall(r"```bash\n(.*?)```", opening, re.S)
    assert blocks[-1].strip() == "bash .ci/run"
    script = (ROOT / ".ci" / "run").read_text()
    assert "apt-get install" in script and "-c requirements/dev.lock" in script
    assert "python3 -m pytest -n 2 -q" in script


def test_the_readme_app_without_fastapi_says_which_extra_to_install(monkeypatch) -> None:
    """The README's ``--app examples.fastapi_app:app`` on an install without FastAPI."""
    import sys

    from qsup.errors import ConfigError
    from qsup.http.app import load_user_app

    monkeypatch.setitem(sys.modules, "fastapi", None)  # what an install without it imports
    monkeypatch.delitem(sys.modules, "examples.fastapi_app", raising=False)
    with pytest.raises(ConfigError) as refused:
        load_user_app("examples.fastapi_app:app")
    assert str(refused.value).endswith('(pip install "qsup[fastapi]")'), refused.value
