"""Example tasks: ``qsup serve --import examples.tasks``, then
``qsup enqueue examples.tasks:add 1 2``."""

import asyncio
import time

from qsup import current_task, task


def add(a: int, b: int) -> int:
    return a + b


async def greet(name: str) -> str:
    await asyncio.sleep(0.01)
    return f"hello {name}"


@task(queue="default", retries=2, timeout=60)
def slow(seconds: float = 1.0) -> float:
    current_task.log(f"sleeping {seconds} s")
    time.sleep(seconds)
    return seconds
