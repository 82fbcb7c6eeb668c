"""Peers for ``scripts/bench.py``: the same scenarios run with pgqueuer (asyncpg, 2 processes,
batch 100, its documented best settings). Imported only when a peer package is importable.

procrastinate is detected but not driven yet: it is reported as "not benchmarked"."""

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
    return f"postgresql://{user}{password}@/{info.get('dbname', 'postgres')}?host={quote(host)}{port}"


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


def _drain_once(dsn: str, count: int, started: dict[int, Any]) -> float:
    asyncio.run(_enqueue(dsn, count, 1000))
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    t0 = time.monotonic()
    procs = [ctx.Process(target=_consume, args=(dsn, go)) for _ in range(2)]
    for p in procs:
        p.start()
        started[p.pid] = p
    go.set()  # process start counts, as for qsup serve
    try:
        while asyncio.run(_count(dsn)) > 0:
            if time.monotonic() - t0 > 300:
                raise TimeoutError("pgqueuer did not drain in 300 s")
            time.sleep(0.02)
        wall = time.monotonic() - t0
    finally:
        for p in procs:
            p.join(30)
            if p.exitcode is None:
                p.terminate()
                p.join(5)
            started.pop(p.pid, None)
    return count / wall


def run(name: str, url: str, quick: bool, repeats: int, logdir: str,
        started: dict[int, Any], stats: Any) -> dict[str, Any]:
    if name != "pgqueuer":
        return {"status": "installed but not benchmarked by this script yet"}
    dsn = asyncpg_dsn(url)
    asyncio.run(_install(dsn))
    single_n, batch_n, drain_n = (2000, 20000, 5000) if quick else (20000, 100000, 20000)
    single = [asyncio.run(_enqueue(dsn, single_n, 1)) for _ in range(repeats)]
    batch = [asyncio.run(_enqueue(dsn, batch_n, 1000)) for _ in range(repeats)]
    _drain_once(dsn, 0, started)  # consume what the enqueue runs left
    drain = [_drain_once(dsn, drain_n, started) for _ in range(repeats)]
    return {"settings": "asyncpg, 2 processes, batch_size=100, drain mode",
            "single_enqueue": stats(single, 0), "batch_enqueue": stats(batch, 0),
            "drain": {"tasks": drain_n, "tasks_per_s": stats(drain, 0)}}
