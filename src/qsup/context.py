"""``current_task``: what a running task knows about itself, and how it talks back.

Workers have no database connection: logs, progress, context saves and child tasks travel to
the supervisor over the worker's pipe, and the supervisor writes them in batches.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qsup import protocol
from qsup.encoding import to_json
from qsup.task_view import decode_headers

if TYPE_CHECKING:
    from qsup.api import Queue
    from qsup.settings import Config

_send_lock = threading.Lock()
_send: Callable[[bytes], None] | None = None
_job: protocol.Job | None = None
_context: dict[str, Any] = {}
_max_logs = 1000
_logs_sent = 0
_children: Queue | None = None  # builds child rows with the server's settings
MAX_LOG_CHARS = 65536
_MAX_CHARS = 1000  # of a progress message: a status line, not a log
PROGRESS_EVERY = 1.0  # seconds between two progress writes of a task
# The latest progress() call's (fraction, message, data), and the one last sent: a throttled
# call only replaces _progress_held (about 0.3 us); the reporter's thread sends it once
# PROGRESS_EVERY has passed, and leave() at the end of the task.
_progress_lock = threading.Lock()
_progress_held: tuple[float | None, str | None, dict[str, Any]] | None = None
_progress_sent: object = None
_progress_next = 0.0  # monotonic time the next progress may be sent
_monotonic = time.monotonic  # a global name: one lookup fewer per throttled call


def configure(config: Config) -> None:
    """Called once in a worker: the server's settings (the per-attempt cap on log rows, and
    the defaults of child tasks: a fresh ``Queue()`` would re-read the environment and the
    working directory, missing the server's ``--config`` file)."""
    global _max_logs, _children
    from qsup.api import Queue

    _max_logs = config.max_logs_per_task
    _children = Queue(config=config)


def bind_channel(send: Callable[[bytes], None]) -> None:
    """Called once in a worker: how messages reach the supervisor."""
    global _send
    _send = send


def send(message: object) -> None:
    if _send is None:
        raise RuntimeError("current_task is only available inside a task run by qsup")
    data = protocol.encode(message)
    with _send_lock:  # tasks may log from their own threads
        _send(data)


def enter(job: protocol.Job, context: dict[str, Any]) -> None:
    global _job, _context, _logs_sent, _progress_held, _progress_sent, _progress_next
    _job, _context, _logs_sent = job, context, 0
    _progress_held = _progress_sent = None
    _progress_next = 0.0


def leave() -> None:
    global _job
    if _progress_held is not _progress_sent:  # the last progress is kept after the end
        send_held_progress(force=True)
    _job = None


def send_held_progress(force: bool = False) -> None:
    """Send the latest progress if it was not sent and PROGRESS_EVERY has passed (``force``:
    at once). Called by ``progress()``, the reporter's thread and ``leave()``; the lock makes
    one of them send each value, in order."""
    global _progress_sent, _progress_next
    if _progress_held is _progress_sent:
        return
    with _progress_lock:
        held, job, now = _progress_held, _job, time.monotonic()
        if held is None or held is _progress_sent or job is None:
            return
        if not force and now < _progress_next:
            return
        _progress_sent, _progress_next = held, now + PROGRESS_EVERY
        fraction, message, data = held
        if message is not None:
            message = str(message)[:_MAX_CHARS]
        shown = {"fraction": fraction, "message": message, "data": data, "at": time.time()}
        send(protocol.Progress(job.id, json.dumps(shown, default=str)))  # any value shows


class CurrentTask:
    """Proxy for the task running in this process (``from qsup import current_task``)."""

    @property
    def _job(self) -> protocol.Job:
        if _job is None:
            raise RuntimeError("current_task is only available inside a task run by qsup")
        return _job

    @property
    def id(self) -> uuid.UUID:
        return uuid.UUID(self._job.id)

    @property
    def attempt(self) -> int:
        return self._job.attempts

    @property
    def name(self) -> str:
        return self._job.name

    @property
    def queue(self) -> str:
        return self._job.queue

    @property
    def headers(self) -> dict[str, Any]:
        """The headers given at enqueue (``_headers``, and what ``on_enqueue`` hooks added)."""
        return decode_headers(self._job.headers)

    @property
    def context(self) -> dict[str, Any]:
        """A dict persisted to ``queued_tasks.context`` by :meth:`save_context` and at the end."""
        self._job  # noqa: B018 - raises outside a task
        return _context

    def save_context(self) -> None:
        send(protocol.SaveContext(self._job.id, to_json(_context, "the task context")))

    def log(self, message: str, type: str = "info") -> None:  # noqa: A002 - the seed's name
        """Add a row to ``queued_task_logs`` for this task (long messages are truncated;
        past ``max_logs_per_task`` rows in one attempt, further calls are dropped)."""
        global _logs_sent
        task_id = self._job.id
        _logs_sent += 1
        if _logs_sent > _max_logs + 1:
            return
        if _logs_sent == _max_logs + 1:
            type, message = "warning", f"log limit of {_max_logs} rows reached; dropping the rest"
        send(protocol.Log(task_id, str(type)[:50], str(message)[:MAX_LOG_CHARS], time.time()))

    def progress(
        self, fraction: float | None = None, message: str | None = None, **data: Any
    ) -> None:
        """Report how far the task got (``fraction`` from 0 to 1), what it does now, and any
        JSON-able ``data``; stored on the task row at most once a second (the latest call
        wins), shown while it runs and kept after it ends. Cheap in a tight loop."""
        global _progress_held
        if _job is None:
            raise RuntimeError("current_task is only available inside a task run by qsup")
        if fraction is not None and not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress: fraction must be from 0 to 1, not {fraction!r}")
        _progress_held = (fraction, message, data)
        if _monotonic() >= _progress_next:
            send_held_progress()

    def add_task(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Add a child task: it waits for this one to complete and starts from its context."""
        from qsup.api import TaskRef, default_queue

        queue = _children or default_queue()
        kwargs.setdefault("_parent", self.id)
        new = queue.build(fn, args, kwargs)
        new = new._replace(context=to_json(_context, "the task context"))
        send(protocol.Enqueue(new))
        return TaskRef(queue, new.id, "waiting")

    def add_workflow(self, workflow: Any) -> Any:
        """Add a workflow whose first steps are children of this task: they start once it
        completes (a branch chosen on an intermediate result). Returns its WorkflowRef."""
        from qsup.api import default_queue
        from qsup.workflow_ref import WorkflowRef, compile_for

        queue = _children or default_queue()
        new = compile_for(queue, workflow, None, parent=self._job.id)
        send(protocol.Enqueue(new))
        return WorkflowRef(queue, new.id, list(new.task_ids), new.output)


current_task = CurrentTask()


def snapshot_context() -> str | None:
    """The context as JSON if it changed since the job started, else None."""
    if _job is None or (not _context and _job.context == "{}"):
        return None
    if _context == json.loads(_job.context):  # a fresh copy: nested edits count
        return None
    return to_json(_context, "the task context")
