"""What a middleware hook sees of a task, and the headers it carries."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qsup.protocol import Job

MAX_HEADERS_BYTES = 16384  # headers travel with every claim: a request id, a trace context


class Task:
    """What a hook sees of a task: ``id``, ``name``, ``queue``, ``attempt`` (0 at enqueue),
    ``args``, ``kwargs`` and ``headers`` (a dict; ``on_enqueue`` may add to it)."""

    __slots__ = ("_id", "name", "queue", "attempt", "args", "kwargs", "_headers")

    def __init__(
        self,
        task_id: str,
        name: str,
        queue: str,
        attempt: int,
        args: Any,
        kwargs: Any,
        headers: dict[str, Any] | str | None,
    ) -> None:
        self._id, self.name, self.queue, self.attempt = task_id, name, queue, attempt
        self.args, self.kwargs, self._headers = args, kwargs, headers

    @classmethod
    def of_job(cls, job: Job, args: Any, kwargs: Any) -> Task:
        return cls(job.id, job.name, job.queue, job.attempts, args, kwargs, job.headers)

    @property
    def id(self) -> uuid.UUID:
        return uuid.UUID(self._id)

    @property
    def headers(self) -> dict[str, Any]:
        """Decoded on first use: most hooks never read them."""
        if not isinstance(self._headers, dict):
            self._headers = decode_headers(self._headers)
        return self._headers

    def __repr__(self) -> str:
        return f"Task({self._id}, {self.name}, attempt {self.attempt})"


def decode_headers(text: str | None) -> dict[str, Any]:
    value = json.loads(text) if text else {}
    return value if isinstance(value, dict) else {}
