"""``qsup schedule`` and ``qsup config check`` with Python-registered schedules, the lines that
schedule errors cite, and their JSON output."""

from __future__ import annotations

import json
import uuid

from tests.integration.test_cli import as_json, one_line, run

PY = ["--import", "tests.py_schedule"]


def test_python_schedule_is_known_to_list_pause_resume_run(conn, db_url):
    listed = as_json(run(["schedule", "list", "--json", *PY], db_url))
    assert [(s["name"], s["task"], s["paused"]) for s in listed] == [
        ("py-tick", "tests.tasks:add", False)
    ]
    paused = as_json(run(["schedule", "pause", "py-tick", "--json", *PY], db_url))
    assert paused == {"schedule": "py-tick", "paused": True}
    assert as_json(run(["schedule", "list", "--json", *PY], db_url))[0]["paused"] is True
    resumed = run(["schedule", "resume", "py-tick", *PY], db_url)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "schedule py-tick: resumed"
    assert as_json(run(["schedule", "list", "--json", *PY], db_url))[0]["paused"] is False
    ran = as_json(run(["schedule", "run", "py-tick", "--json", *PY], db_url))
    found = conn.execute(
        "SELECT name, args FROM queued_tasks WHERE id = %s", (uuid.UUID(ran["id"]),)
    ).fetchone()
    assert found == ("tests.tasks:add", [20, 22])


def test_imports_in_the_config_file_serve_the_schedule_commands_too(db_url, tmp_path):
    path = tmp_path / "q.toml"
    path.write_text('imports = ["tests.py_schedule"]\n')
    listed = as_json(run(["schedule", "list", "--json", "--config", str(path)], db_url))
    assert [s["name"] for s in listed] == ["py-tick"]


def test_without_the_import_the_python_schedule_is_unknown(db_url):
    assert as_json(run(["schedule", "list", "--json"], db_url)) == []
    unknown = run(["schedule", "pause", "py-tick"], db_url)
    assert unknown.returncode == 2
    assert "no such schedule" in one_line(unknown)


def test_a_bad_import_is_exit_2_naming_the_module(db_url):
    result = run(["schedule", "list", "--import", "tests.no_such_module"], db_url)
    assert result.returncode == 2
    assert "tests.no_such_module" in one_line(result)


BAD_CRON = """log_level = "INFO"

[[schedules]]
name = "ok"
cron = "* * * * *"
task = "tests.tasks:add"
args = [1, 2]

[[schedules]]
name = "bad"
task = "tests.tasks:add"
cron = "every day"
"""


def test_schedule_errors_cite_the_line_of_the_bad_key(tmp_path):
    path = tmp_path / "q.toml"
    path.write_text(BAD_CRON)
    for command in (["config", "check"], ["schedule", "list"], ["serve", "--no-http"]):
        result = run([*command, "--config", str(path)], "postgresql://127.0.0.1:1/x")
        assert result.returncode == 2, (command, result.stderr)
        assert f"from file {path}:12: invalid cron" in one_line(result), command


def test_config_check_refuses_a_schedule_whose_task_cannot_be_imported(tmp_path):
    path = tmp_path / "q.toml"
    path.write_text('[[schedules]]\nname = "x"\ncron = "* * * * *"\n\ntask = "tests.nope:f"\n')
    result = run(["config", "check", "--config", str(path)])
    assert result.returncode == 2
    line = one_line(result)
    assert f"schedule 'x': task = 'tests.nope:f' from file {path}:5" in line
    assert "cannot import module 'tests.nope'" in line
    missing = tmp_path / "m.toml"
    missing.write_text('[[schedules]]\nname = "y"\ncron = "* * * * *"\ntask = "tests.tasks:nope"\n')
    result = run(["config", "check", "--config", str(missing)])
    assert result.returncode == 2
    assert "has no 'nope'" in one_line(result)
    as_json = run(["config", "check", "--json", "--config", str(missing)])
    assert as_json.returncode == 2  # before: exit 2 and nothing on stdout
    report = json.loads(as_json.stdout)
    assert report == {"ok": False, "error": one_line(as_json)[13:], "exit_code": 2}
    assert "has no 'nope'" in report["error"]


def test_config_check_json_and_python_schedules(tmp_path):
    ok = run(["config", "check", "--json", *PY], cwd=None)
    assert json.loads(ok.stdout) == {"ok": True, "schedules": ["py-tick"]}
    plain = run(["config", "check", *PY])
    assert plain.stdout.strip() == "configuration ok (1 schedule(s))"
