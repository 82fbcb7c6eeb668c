"""Handing claimed tasks to workers, calling back what an idle worker could run, and taking
back what an operator cancelled: between the ledger (what is held where) and the crew (the
processes); the sizes are policy's."""

from __future__ import annotations

from typing import Any

from qsup import log, protocol
from qsup.supervisor import policy
from qsup.supervisor.crew import Crew
from qsup.supervisor.ledger import Ledger
from qsup.supervisor.pool import kill


def dispatch(ledger: Ledger, crew: Crew, how: policy.Handoff) -> None:
    """Top up workers from the buffer, emptiest first, several jobs per message."""
    load = ledger.load
    workers = crew.workers.values()
    takers = sorted((w for w in workers if w.accepting), key=lambda w: load(w.pid))
    booting = sum(1 for w in workers if not w.ready and w.retiring is None)
    spare = crew.spare
    for index, worker in enumerate(takers):
        consumers = len(takers) - index + spare + booting
        count = policy.refill_size(load(worker.pid), len(ledger.buffer), consumers, how)
        if not count:
            continue
        tasks = ledger.hand_out(worker.pid, count)
        try:
            worker.conn.send_bytes(protocol.encode(protocol.Assign(tasks)))
        except OSError:
            ledger.not_delivered(worker.pid, tasks)


def recall(ledger: Ledger, crew: Crew) -> None:
    """A worker idles and nothing is left to hand out: call back the jobs the others hold but
    have not started (a long task must not hold up the job queued behind it). They come back
    in a ``Released`` and go to the buffer, to be shared out again."""
    if ledger.buffer:
        return
    accepting = [w for w in crew.workers.values() if w.accepting]
    if all(ledger.load(w.pid) for w in accepting):
        return
    for worker in accepting:
        queued = ledger.recall(worker.pid)
        if queued:
            crew.send(worker, protocol.Drop(queued))


def inspect(ledger: Ledger, crew: Crew, task_ids: set[Any], now: float) -> None:
    """Ask the workers running these tasks what they are doing (answered on their reporter's
    thread, without stopping the task); a task no worker of ours runs is answered here."""
    unheld = set(task_ids)
    for worker in crew.workers.values():
        for task_id in task_ids & ledger.held_by(worker.pid):
            crew.send(worker, protocol.Inspect(task_id))
            unheld.discard(task_id)
    for task_id in unheld:
        ledger.outbox.reported(protocol.Inspected(task_id, None), now)


def cancel(ledger: Ledger, crew: Crew, task_ids: set[Any], now: float) -> None:
    """Stop tasks an operator cancelled: drop them from the buffer and from workers' queues,
    or kill the worker running one."""
    drops = ledger.cancel(task_ids, now)
    for worker in crew.workers.values():
        if worker.pid in drops:
            crew.send(worker, protocol.Drop(drops[worker.pid]))
        current = ledger.current(worker.pid)
        if current in task_ids:
            log.event("cancelled", current).info("cancelling: stopping worker {}", worker.slot)
            kill(worker, "cancel")
