"""What a failed task's row and log keep of its traceback: the user's frames only, in every
exception of the chain; before, the task's log kept the full one, qsup's runner frames too."""

from __future__ import annotations

import os

import qsup
from qsup.task_ids import parse_task_id
from qsup.worker.runner import _traceback

QSUP_DIR = os.path.dirname(qsup.__file__) + os.sep


def users_task() -> None:
    try:
        os.environ["QSUP_NO_SUCH_VARIABLE_EVER"]
    except KeyError:
        parse_task_id("not hex")  # qsup code the task calls raises, while handling its error


def call_like_the_runner() -> str:
    """A frame from qsup's directory (as the runner's are) around the user's call."""
    namespace: dict[str, object] = {"users_task": users_task, "_traceback": _traceback}
    code = compile(
        "def run():\n    try:\n        users_task()\n    except Exception:\n"
        "        return _traceback()\n",
        os.path.join(QSUP_DIR, "worker", "runner.py"),
        "exec",
    )
    exec(code, namespace)  # noqa: S102 - a frame whose file is qsup's, as in a worker
    return namespace["run"]()  # type: ignore[operator,no-any-return]


def test_the_stored_traceback_has_the_users_frames_and_no_qsup_frames():
    text = call_like_the_runner()
    assert QSUP_DIR not in text, text
    assert text.count("in users_task") == 2  # in both exceptions of the chain
    assert text.rstrip().endswith("expected hex digits: the full id, its 12-digit short form,"
                                  " or a unique prefix or suffix of 4+ digits")  # fmt: skip
    assert "KeyError: 'QSUP_NO_SUCH_VARIABLE_EVER'" in text
    assert "During handling of the above exception, another exception occurred" in text
