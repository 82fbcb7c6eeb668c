"""``python manage.py qsup serve ...``: qsup's command line with this project's settings and,
unless one is given, the qsup backend's database."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand

from qsup.django.runtime import database_url


class Command(BaseCommand):
    help = "Run a qsup command (serve, task, queue, ...) for this project: qsup --help"

    def run_from_argv(self, argv: list[str]) -> None:
        # every argument is qsup's; manage.py's own --settings/--pythonpath it applied already
        own = ("--settings", "--pythonpath")
        run([arg for arg in argv[2:] if not arg.startswith(own)])

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("args", nargs="*")

    def handle(self, *args: str, **options: Any) -> None:
        run(list(args))


def run(args: list[str]) -> None:
    """qsup's console entry point (it exits), with the qsup backend's database as the default
    for every command."""
    from qsup.cli import main

    if not (os.environ.get("QUEUE_DATABASE_URL") or os.environ.get("DATABASE_URL")):
        url = database_url()
        if url:
            os.environ["QUEUE_DATABASE_URL"] = url
    sys.argv = ["qsup", *args]
    main()
