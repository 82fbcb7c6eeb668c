"""Peers for ``scripts/bench.py``: the same scenarios run with pgqueuer (asyncpg, 2 processes,
batch 100, its documented best settings) and procrastinate (psycopg, 2 worker processes with
concurrency 10, LISTEN/NOTIFY on). Imported only when a peer package is importable."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict


def asyncpg_dsn(conninfo: str) -> str:
    """asyncpg wants a URI; the embedded server's URL is key=value with a socket dir."""
    info = conninfo_to_dict(conninfo)
    user = quote(str(info.get("user") or "postgres"))
    password = f":{quote(str(info['password']))}" if info.get("password") else ""
    host = str(info.get("host") or "")
    port = f"&port={info['port']}" if info.get("port") else ""
    dbname = info.get("dbname", "postgres")
    return f"postgresql://{user}{password}@/{dbname}?host={quote(host)}{port}"


async def _driver(dsn: str) -> tuple[Any, Any]:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver

    conn = await asyncpg.connect(dsn)
    return conn, AsyncpgDriver(conn)


async def _install(dsn: str) -> None:
    from pgqueuer.queries import Queries

    conn, driver = await _driver(dsn)
    try:
        await Queries(driver).install()
    finally:
        await conn.close()


async def _count(dsn: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM pgqueuer"))
    finally:
        await conn.close()


async def _enqueue(dsn: str, count: int, batch: int) -> float:
    from pgqueuer.queries import Queries

    conn, driver = await _driver(dsn)
    try:
        q = Queries(driver)
        t0 = time.perf_counter()
        if batch == 1:
            for _ in range(count):
                await q.enqueue("noop", None)
        else:
            for start in range(0, count, batch):
                n = min(batch, count - start)
                await q.enqueue(["noop"] * n, [None] * n, [0] * n)
        return count / (time.perf_counter() - t0)
    finally:
        await conn.close()


def _consume(dsn: str, go: Any) -> None:
    async def main() -> None:
        from pgqueuer import QueueManager
        from pgqueuer.domain.types import QueueExecutionMode
        from pgqueuer.queries import Queries

        conn, driver = await _driver(dsn)
        qm = QueueManager(Queries(driver))

        @qm.entrypoint("noop")
        async def noop(job: Any) -> None:
            return None

        go.wait()
        await qm.run(batch_size=100, mode=QueueExecutionMode.drain)
        await conn.close()

    asyncio.run(main())


def _drain_processes(
    target: Any, conninfo: str, left: Any, count: int, started: dict[int, Any]
) -> float:
    """Start 2 consumer processes (spawned: their start-up counts, as for qsup serve) and time
    them until ``left()`` is 0."""
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    t0 = time.monotonic()
    procs = [ctx.Process(target=target, args=(conninfo, go)) for _ in range(2)]
    for p in procs:
        p.start()
        started[p.pid] = p
    go.set()
    try:
        while left() > 0:
            if time.monotonic() - t0 > 300:
                raise TimeoutError(f"{target.__name__} did not drain in 300 s")
            time.sleep(0.02)
        wall = time.monotonic() - t0
    finally:
        for p in procs:
            p.join(30)
            if p.exitcode is None:
                p.terminate()
                p.join(5)
            started.pop(p.pid, None)
    return count / wall if count else 0.0


async def _steady(dsn: str, count: int) -> float | None:
    """Tasks/s from the first pick to the last success, from pgqueuer's own log (its rows'
    ``created`` is the transaction's start): the peer's side of qsup's "steady" figure."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        span = await conn.fetchval(
            "SELECT extract(epoch FROM max(created) FILTER (WHERE status = 'successful')"
            " - min(created) FILTER (WHERE status = 'picked'))::float8 FROM pgqueuer_log"
        )
        return count / span if span else None
    finally:
        await conn.close()


async def _clear_log(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE pgqueuer_log")
    finally:
        await conn.close()


def _drain_once(dsn: str, count: int, started: dict[int, Any]) -> tuple[float, float | None]:
    """(tasks/s from the consumers' spawn, tasks/s from the first pick to the last success)."""
    asyncio.run(_enqueue(dsn, count, 1000))
    asyncio.run(_clear_log(dsn))
    rate = _drain_processes(_consume, dsn, lambda: asyncio.run(_count(dsn)), count, started)
    return rate, asyncio.run(_steady(dsn, count)) if count else None


# --- procrastinate ---------------------------------------------------------------------------

PROCRASTINATE_CONCURRENCY = 10  # per worker process: no-op async jobs, I/O-bound for a worker


def _procrastinate_app(url: str) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    return app


async def _procrastinate_enqueue(url: str, count: int, batch: int) -> float:
    app = _procrastinate_app(url)
    async with app.open_async():
        task = app.tasks["noop"]
        t0 = time.perf_counter()
        if batch == 1:
            for _ in range(count):
                await task.defer_async()
        else:
            for start in range(0, count, batch):
                await task.batch_defer_async(*[{}] * min(batch, count - start))
        return count / (time.perf_counter() - t0)


def _procrastinate_consume(url: str, go: Any) -> None:
    async def main() -> None:
        app = _procrastinate_app(url)
        async with app.open_async():
            go.wait()
            await app.run_worker_async(
                concurrency=PROCRASTINATE_CONCURRENCY,
                wait=False,
                install_signal_handlers=False,
                delete_jobs="never",
            )

    asyncio.run(main())


def _procrastinate_left(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        ).fetchone()
        return int(row[0]) if row else 0


def _procrastinate_clear(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM procrastinate_jobs")


def _procrastinate_drain_once(url: str, count: int, started: dict[int, Any]) -> float:
    asyncio.run(_procrastinate_enqueue(url, count, 1000))
    return _drain_processes(
        _procrastinate_consume, url, lambda: _procrastinate_left(url), count, started
    )


def run_procrastinate(
    url: str, quick: bool, repeats: int, started: dict[int, Any], stats: Any
) -> dict[str, Any]:
    async def install() -> None:
        app = _procrastinate_app(url)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    asyncio.run(install())
    single_n, batch_n, drain_n = (500, 5000, 2000) if quick else (2000, 20000, 5000)
    single = [asyncio.run(_procrastinate_enqueue(url, single_n, 1)) for _ in range(repeats)]
    batch = [asyncio.run(_procrastinate_enqueue(url, batch_n, 1000)) for _ in range(repeats)]
    _procrastinate_clear(url)  # what the enqueue runs left (draining it takes minutes)
    drain = [_procrastinate_drain_once(url, drain_n, started) for _ in range(repeats)]
    return {
        "settings": f"psycopg, 2 processes, concurrency={PROCRASTINATE_CONCURRENCY},"
        " listen_notify, wait=False",
        "single_enqueue": stats(single, 0),
        "batch_enqueue": stats(batch, 0),
        "drain": {"tasks": drain_n, "tasks_per_s": stats(drain, 0)},
    }


def run(
    name: str, url: str, quick: bool, repeats: int, logdir: str, started: dict[int, Any], stats: Any
) -> dict[str, Any]:
    if name == "procrastinate":
        return run_procrastinate(url, quick, repeats, started, stats)
    if name != "pgqueuer":
        return {"status": "installed but not benchmarked by this script yet"}
    dsn = asyncpg_dsn(url)
    asyncio.run(_install(dsn))
    single_n, batch_n, drain_n = (2000, 20000, 5000) if quick else (20000, 100000, 20000)
    single = [asyncio.run(_enqueue(dsn, single_n, 1)) for _ in range(repeats)]
    batch = [asyncio.run(_enqueue(dsn, batch_n, 1000)) for _ in range(repeats)]
    _drain_once(dsn, 0, started)  # consume what the enqueue runs left
    drain = [_drain_once(dsn, drain_n, started) for _ in range(repeats)]
    return {
        "settings": "asyncpg, 2 processes, batch_size=100, drain mode",
        "single_enqueue": stats(single, 0),
        "batch_enqueue": stats(batch, 0),
        "drain": {
            "tasks": drain_n,
            "tasks_per_s": stats([r for r, _ in drain], 0),
            "steady_tasks_per_s": stats([s for _, s in drain], 0),
        },
    }
