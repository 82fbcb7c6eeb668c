"""The embedded server's lifetime, with a real server in a data dir of this module's own (the
suite's shared server in the temp dir is not touched): it runs while live qsup processes use it
or ``qsup db start`` keeps it, and a process killed by a signal does not keep it forever."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from qsup.db import embedded

USER = (
    "import sys; from qsup.db.embedded import embedded_url;"
    " print(embedded_url(sys.argv[1]), flush=True); sys.stdin.read()"
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("embedded")
    yield folder
    embedded.stop(str(folder))


@pytest.fixture
def env(data_dir: Path) -> Iterator[dict[str, str]]:
    environ = {**os.environ, "QSUP_DATA_DIR": str(data_dir)}
    for key in ("QUEUE_DATABASE_URL", "DATABASE_URL", "QSUP_CONFIG"):
        environ.pop(key, None)
    yield environ
    embedded.stop(str(data_dir))  # each test starts from a stopped server
    assert not embedded.status(str(data_dir)).running


@pytest.fixture
def users(env: dict[str, str], data_dir: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Start processes that join the server and stay until their stdin closes."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for pipe in (proc.stdin, proc.stdout):
            pipe.close() if pipe else None


def join(users: list[subprocess.Popen[str]], env: dict[str, str], data_dir: Path) -> str:
    proc = subprocess.Popen(
        [sys.executable, "-c", USER, str(data_dir)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    users.append(proc)
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def qsup(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qsup", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def status(data_dir: Path) -> embedded.Status:
    return embedded.status(str(data_dir))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_user_killed_by_a_signal_does_not_keep_the_server_forever(
    users, env, data_dir, tmp_path, sig
):
    join(users, env, data_dir)
    before = status(data_dir)
    assert before.running and before.users == [users[0].pid] and not before.kept
    users[0].send_signal(sig)
    users[0].wait(10)
    assert status(data_dir).users == []  # its lock died with it; the server still runs
    done = qsup(env, tmp_path, "db", "url")  # the next user stops it when it leaves
    assert done.returncode == 0, done.stderr
    assert not status(data_dir).running
    assert not psutil.pid_exists(before.pid) or psutil.Process(before.pid).status() == "zombie"


def test_the_last_user_to_exit_stops_it_and_db_stop_waits_for_users(users, env, data_dir, tmp_path):
    url = join(users, env, data_dir)
    join(users, env, data_dir)
    refused = qsup(env, tmp_path, "db", "stop")
    assert refused.returncode == 1
    assert refused.stderr.startswith("qsup: error: not stopped: qsup processes")
    assert len(refused.stderr.splitlines()) == 1
    users[0].communicate("")  # exits normally: the other one still uses the server
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    users[1].communicate("")
    assert not status(data_dir).running


def test_db_start_keeps_it_running_for_psql_until_db_stop(env, data_dir, tmp_path):
    started = qsup(env, tmp_path, "db", "start")
    assert started.returncode == 0, started.stderr
    shown = json.loads(qsup(env, tmp_path, "db", "status", "--json").stdout)
    assert shown["running"] and shown["kept"] and shown["users"] == []
    assert shown["data_dir"] == str(data_dir.resolve()) and shown["pid"] > 0
    url = qsup(env, tmp_path, "db", "url")
    assert url.returncode == 0 and url.stderr == ""  # nothing to warn about
    assert url.stdout.strip() == shown["url"]
    psql = shutil.which("psql")
    if psql:  # what the README shows: psql "$(qsup db url)"
        out = subprocess.run(
            [psql, url.stdout.strip(), "-Atc", "SELECT 40 + 2"], capture_output=True, text=True
        )
        assert out.stdout.strip() == "42", out.stderr
    with psycopg.connect(url.stdout.strip()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    stopped = qsup(env, tmp_path, "db", "stop")
    assert (stopped.returncode, stopped.stdout) == (0, "stopped\n")
    assert not status(data_dir).running
    again = qsup(env, tmp_path, "db", "stop")
    assert (again.returncode, again.stdout) == (0, "not running\n")
    assert "running:  no" in qsup(env, tmp_path, "db", "status").stdout


def test_db_url_on_a_first_run_says_how_to_keep_it(env, data_dir, tmp_path):
    shown = qsup(env, tmp_path, "db", "url", "--json")
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert body["embedded"] and not body["stays_running"]
    assert body["url"].startswith("postgresql://")
    assert "qsup db start" in shown.stderr and len(shown.stderr.splitlines()) == 1
    assert not status(data_dir).running  # as the note said


def test_db_commands_refuse_a_configured_url_and_bad_input(env, tmp_path):
    external = {**env, "QUEUE_DATABASE_URL": "postgresql://u:secret@db.example/app"}
    for command in ("start", "stop", "status"):
        out = qsup(external, tmp_path, "db", command)
        assert out.returncode == 2, out
        assert out.stderr.startswith(f"qsup: error: db {command}: database_url is set")
        assert "QUEUE_DATABASE_URL" in out.stderr and "secret" not in out.stderr
        assert len(out.stderr.splitlines()) == 1
    bad = qsup(env, tmp_path, "db", "status", "--bogus")
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
    unusable = {**env, "QSUP_DATA_DIR": "/proc/qsup-cannot-be-here"}
    out = qsup(unusable, tmp_path, "db", "start")
    assert out.returncode == 3, out
    assert out.stderr.startswith("qsup: error: cannot start the embedded PostgreSQL in /proc/")
    assert len(out.stderr.splitlines()) == 1


def test_should_stop_only_when_running_unkept_and_unused():
    assert embedded.should_stop(running=True, kept=False, users=[])
    assert not embedded.should_stop(running=True, kept=True, users=[])
    assert not embedded.should_stop(running=True, kept=False, users=[123])
    assert not embedded.should_stop(running=False, kept=False, users=[])
