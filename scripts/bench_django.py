"""What the Django backend costs (run in the Django environment: scripts/django_env.sh's venv):
enqueue through ``django.tasks`` against ``Queue.add_task``, and the drain of N no-op tasks by
``qsup serve --workers 2`` as Django tasks (Django set up, connections managed) against plain
ones. Prints JSON. Database: QSUP_BENCH_DATABASE_URL, else the tests' embedded server."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "examples" / "django")]
N = int(os.environ.get("QSUP_BENCH_N", "500"))


def database() -> str:
    from tests.conftest import _server_url

    server = os.environ.get("QSUP_BENCH_DATABASE_URL") or _server_url()
    name = f"qsup_bench_django_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(server, dbname=name)


def drain(url: str, env: dict[str, str], module: str, enqueue: object) -> float:
    from tests.servers import Server, wait_for

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE queued_tasks CASCADE")
        enqueue()  # type: ignore[operator]
        log = Path(f"/tmp/bench-django-{os.getpid()}.log")
        server = Server(url, ["--workers", "2"], env, log, imports=(module,))
        began = time.perf_counter()
        try:
            done = "SELECT count(*) FROM queued_tasks WHERE state = 'completed'"
            wait_for(lambda: conn.execute(done).fetchone() == (N,), 120, 0.01, "the drain")
            return time.perf_counter() - began
        finally:
            server.stop()


def main() -> None:
    url = database()
    try:
        run(url)
    finally:
        from django.db import connections

        connections.close_all()
        name = conninfo_to_dict(url)["dbname"]
        with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(url: str) -> None:
    os.environ["SHOP_DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "shop.settings"
    import django

    django.setup()
    from bench_django_tasks import noop_django
    from bench_tasks import noop
    from django.db import connections

    from qsup import Queue
    from qsup.db.migrate import migrate

    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
    queue = Queue(url)
    report: dict[str, float] = {}
    for label, one in (("django", noop_django.enqueue), ("plain", lambda: queue.add_task(noop))):
        began = time.perf_counter()
        for _ in range(N):
            one()
        report[f"enqueue_{label}_us"] = round((time.perf_counter() - began) / N * 1e6, 1)
    connections.close_all()
    path = os.pathsep.join([str(ROOT / "scripts"), str(ROOT / "examples" / "django")])
    base = {"PYTHONPATH": path, "QSUP_LOG_LEVEL": "WARNING", "SHOP_DATABASE_URL": url}
    django_env = {**base, "DJANGO_SETTINGS_MODULE": "shop.settings"}
    report["drain_django_s"] = round(
        drain(
            url, django_env, "bench_django_tasks", lambda: [noop_django.enqueue() for _ in range(N)]
        ),
        3,
    )
    connections.close_all()
    plain_env = {**base, "DJANGO_SETTINGS_MODULE": ""}
    report["drain_plain_s"] = round(
        drain(
            url, plain_env, "bench_tasks", lambda: queue.add_tasks((noop, (), {}) for _ in range(N))
        ),
        3,
    )
    queue.close()
    print(json.dumps({"tasks": N, **report}))


if __name__ == "__main__":
    main()
