"""The setting options of ``serve``, ``queue start`` and ``config show`` come from the settings
table: every declared flag is there with its doc, and values go through the loader."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import typer

from qsup.cli.config_cmd import show
from qsup.cli.options import flag_values
from qsup.cli.queue_cmd import start
from qsup.cli.serve_cmd import HTTP_FLAGS, serve
from qsup.settings import SETTINGS

pytestmark = pytest.mark.timeout(30)
FLAGGED = {f.metadata["flag"]: f for f in SETTINGS if f.metadata["flag"]}


def options(command: Any) -> dict[str, Any]:
    """The command's options by name, as typer builds them."""
    group = typer.Typer()
    group.command()(command)
    group.command("other")(lambda: None)  # two commands: the command keeps its own name
    params = typer.main.get_command(group).commands[command.__name__].params  # type: ignore[attr-defined]
    return {name: p for p in params if p.param_type_name == "option" for name in p.opts}


@pytest.mark.parametrize("command", [serve, show])
def test_every_flag_of_the_settings_table_is_an_option_with_its_doc(command):
    found = options(command)
    for flag, f in FLAGGED.items():
        assert flag in found, flag
        assert f.metadata["doc"] in (found[flag].help or "")


def test_queue_start_takes_the_worker_flags_but_not_the_http_ones():
    found = options(start)
    assert "--workers" in found and "-w" in found and "--import" in found
    assert not {f"--{name}" for name in HTTP_FLAGS} & set(found)


def test_repeated_and_comma_separated_list_flags_are_one_list_for_the_loader():
    assert flag_values({"queues": ["a,b", "c"], "imports": [], "max_workers": None}) == {
        "queues": "a,b,c"
    }


def test_a_bad_flag_value_is_one_line_naming_setting_value_and_flag():
    done = subprocess.run(
        [sys.executable, "-m", "qsup", "queue", "start", "--workers", "many"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "qsup: error: max_workers: invalid value 'many' from flag --workers: expected an integer"
    ]


def _helps(group: Any) -> Any:
    """Every command's help as ``qsup ... --help`` renders it (rich markup included)."""
    from typer.testing import CliRunner

    for name, command in typer.main.get_command(group).commands.items():  # type: ignore[attr-defined]
        for sub in getattr(command, "commands", None) or [None]:
            path = [name, sub] if sub else [name]
            yield " ".join(path), CliRunner().invoke(group, [*path, "--help"]).output


def test_no_help_text_loses_brackets_to_rich_markup():
    """``[limits.QUEUE]`` in a help string was read as a markup tag: ``enqueue --help`` showed
    ``key_concurrency limit ()``."""
    from qsup.cli import app, register

    register([])
    helps = dict(_helps(app))
    assert "enqueue" in helps and "task list" in helps and len(helps) > 30
    for command, text in helps.items():
        assert "Usage:" in text, command
        assert "()" not in text, f"qsup {command} --help: {text}"
    assert "(see limits.QUEUE)" in " ".join(helps["enqueue"].replace("│", " ").split())
