"""The worker's side of looking inside a task: the stack read from another thread (sync and
async), and the throttle of ``current_task.progress``."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator

import pytest

import qsup
from qsup import context, protocol
from qsup.context import current_task
from qsup.worker import probe

pytestmark = pytest.mark.timeout(30)
DIRS = tuple(os.path.dirname(str(m.__file__)) + os.sep for m in (qsup, asyncio))


def read_from_another_thread(loop: asyncio.AbstractEventLoop, seen: threading.Event) -> list[str]:
    out: list[str] = []

    def read() -> None:
        seen.wait(5)
        out.append(probe.stack_text(loop, DIRS))

    threading.Thread(target=read, daemon=True).start()
    return out


def test_the_main_thread_sleeping_in_a_c_call_shows_its_frames_innermost_last() -> None:
    loop = asyncio.new_event_loop()
    seen = threading.Event()
    out = read_from_another_thread(loop, seen)

    def deep_wait() -> None:
        seen.set()
        while not out:
            time.sleep(0.01)

    deep_wait()
    lines = out[0].splitlines()
    assert lines[0] == "Main thread (innermost last):"
    assert lines[-2].endswith("in deep_wait") and lines[-1].strip() == "time.sleep(0.01)"
    loop.close()


def test_an_async_task_shows_its_coroutine_chain_not_the_idle_loop() -> None:
    loop = asyncio.new_event_loop()
    seen = threading.Event()
    out = read_from_another_thread(loop, seen)

    async def inner() -> None:
        seen.set()
        while not out:
            await asyncio.sleep(0.01)

    async def outer() -> None:
        await inner()

    loop.run_until_complete(asyncio.wait_for(outer(), 10))
    loop.close()
    # (the main thread's frames show too here: no runner frame marks where the task began;
    # the e2e test checks a worker leaves them out)
    chain = out[0].split("Coroutine chain of ", 1)[1]
    names = [line.rsplit(" in ", 1)[1] for line in chain.splitlines() if ", in " in line]
    assert names == ["outer", "inner", "sleep"], out[0]


def test_an_answer_about_another_task_says_it_does_not_run_here() -> None:
    from qsup.worker.meter import Meter

    loop = asyncio.new_event_loop()
    answer = probe.answer("other", ("this", time.time(), 0.0), loop, Meter(), DIRS)
    assert answer == protocol.Inspected("other", None)
    answer = probe.answer("this", ("this", time.time() - 2, 0.0), loop, Meter(), DIRS)
    assert answer.stack and answer.running >= 2 and answer.rss > 0 and answer.cpu > 0
    loop.close()


@pytest.fixture
def sent() -> Iterator[list[protocol.Progress]]:
    messages: list[protocol.Progress] = []
    context.bind_channel(lambda data: messages.append(protocol.decode(data)))
    context.enter(protocol.Job("t1", "n", "[]", "{}", 1.0, 1, 0, "{}"), {})
    yield messages
    context.leave()
    context.bind_channel(None)  # type: ignore[arg-type]


def test_progress_sends_at_most_once_a_second_and_the_last_value_at_the_end(sent) -> None:
    for i in range(10_000):
        current_task.progress(i / 10_000, f"row {i}", table="orders")
    assert len(sent) == 1 and json.loads(sent[0].progress)["fraction"] == 0.0
    context.send_held_progress()  # the reporter's tick, within the second: nothing
    assert len(sent) == 1
    context.leave()
    last = json.loads(sent[-1].progress)
    assert len(sent) == 2 and last["fraction"] == 0.9999 and last["message"] == "row 9999"
    assert last["data"] == {"table": "orders"}


def test_the_reporters_tick_sends_a_held_value_once_the_second_is_up(sent, monkeypatch) -> None:
    current_task.progress(0.25)
    current_task.progress(0.5, "half way")
    monkeypatch.setattr(context, "_progress_next", 0.0)  # the second is up
    context.send_held_progress()
    context.send_held_progress()  # sent once
    assert [json.loads(m.progress)["fraction"] for m in sent] == [0.25, 0.5]


def test_progress_refuses_a_fraction_outside_0_to_1(sent) -> None:
    with pytest.raises(ValueError, match="from 0 to 1"):
        current_task.progress(1.5)
    assert sent == []


def test_progress_outside_a_task_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="only available inside a task"):
        current_task.progress(0.5)
