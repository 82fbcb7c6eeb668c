"""Django's side of the suite (Django 6, Python 3.12+: scripts/django_env.sh): the example
shop (examples/django) on the run's PostgreSQL database, its tables migrated, and real
``qsup serve`` processes set up with its settings."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.servers import ROOT, Server

SHOP = ROOT / "examples" / "django"
sys.path.insert(0, str(SHOP))
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.django.settings"
django.setup()  # before the test modules import the tasks: @task reads TASKS

from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402


@pytest.fixture(scope="session")
def shop_database(database_url: str) -> str:
    """Point the shop's aliases at this worker's database (no connection is open yet) and
    create its tables."""
    info = conninfo_to_dict(database_url)
    from django.conf import settings

    for alias in ("default", "queue"):
        settings.DATABASES[alias].update(
            NAME=info.get("dbname"),
            USER=info.get("user"),
            PASSWORD=info.get("password"),
            HOST=info.get("host"),
            PORT=info.get("port"),
        )
    call_command("migrate", verbosity=0)
    connections.close_all()
    return database_url


@pytest.fixture
def shop(shop_database: str, db_url: str) -> Iterator[str]:
    """The qsup tables and the shop's orders emptied; Django's connections closed after."""
    with connections["default"].cursor() as cursor:
        cursor.execute("TRUNCATE orders_order RESTART IDENTITY")
    yield db_url
    connections.close_all()


@pytest.fixture
def serve(shop: str, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start ``qsup serve`` for the shop (DJANGO_SETTINGS_MODULE set, retries 50 ms apart,
    Django's task signals written to ``tmp_path/signals``); all stopped after the test."""
    started: list[Server] = []
    pythonpath = os.pathsep.join([str(SHOP), os.environ.get("PYTHONPATH", "")])

    def start(*args: str, env: dict[str, str] | None = None) -> Server:
        full_env = {
            "DJANGO_SETTINGS_MODULE": "tests.django.settings",
            "SHOP_DATABASE_URL": shop,
            "PYTHONPATH": pythonpath,
            "QUEUE_RETRY_BACKOFF_BASE": "0.05",
            "QSUP_LOG_LEVEL": "DEBUG",
            "QSUP_TEST_SIGNALS": str(tmp_path / "signals"),
            **(env or {}),
        }
        log = tmp_path / f"serve-{len(started)}.log"
        server = Server(shop, args, full_env, log, imports=("tests.django.tasks",))
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


def refreshed(result: Any) -> Any:
    result.refresh()
    return result
