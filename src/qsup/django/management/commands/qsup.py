"""``python manage.py qsup serve ...``: qsup's command line with this project's settings and,
unless one is given, the qsup backend's database."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from qsup.django.runtime import database_url


class Command(BaseCommand):
    help = "Run a qsup command (serve, task, queue, ...) for this project: qsup --help"

    def run_from_argv(self, argv: list[str]) -> None:
        # every argument is qsup's; manage.py applied its own --settings/--pythonpath already
        own = ("--settings", "--pythonpath")
        sys.exit(run([arg for arg in argv[2:] if not arg.startswith(own)]))

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("args", nargs=argparse.REMAINDER)  # qsup's flags too

    def handle(self, *args: str, **options: Any) -> None:  # call_command("qsup", "task", ...)
        code = run(list(args))
        if code:
            raise CommandError(f"qsup {' '.join(args)} exited {code}", returncode=code)


def run(args: list[str]) -> int:
    """qsup's console entry point, with the qsup backend's database as the default for every
    command; returns its exit code."""
    from qsup.cli import main

    if not (os.environ.get("QUEUE_DATABASE_URL") or os.environ.get("DATABASE_URL")):
        url = database_url()
        if url:
            os.environ["QUEUE_DATABASE_URL"] = url
    sys.argv = ["qsup", *args]
    try:
        main()
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    return 0
