"""The supervisor's side of flow control: which queues are paused or limited, and their claim.

The database holds the truth (``queued_task_queues``, migration 0008): the gate re-reads it at
least every ``REFRESH`` seconds while the server claims, and at once when a NOTIFY says it
changed. Paused and limited queues are left out of the ordinary claim; limited ones go through
``qsup_claim_limited``, which counts the slots under a lock of the queue's row, so all servers
together keep to the limits. While no queue is paused or limited, nothing here touches the
database but that read.

A full queue with only a concurrency limit is also claimed *ahead*: up to two tasks per slot
this server holds there (so that one claim serves several ended tasks), kept aside
(``Ledger.ahead``) without a slot. When a slot holder ends, a successor takes its slot over at
once (``hand_on``), without a claim's round trip; the flush that writes the ended task's
outcome gives the successor its slot in the same transaction, so the database never counts
fewer slots than are in use.
"""

from __future__ import annotations

import math
import socket
from collections import Counter
from typing import Any

from loguru import logger

from qsup import flow, flow_store, log, repo
from qsup.protocol import TaskId
from qsup.settings import Config
from qsup.supervisor import policy
from qsup.supervisor.ledger import Ledger
from qsup.supervisor.link import Link

REFRESH = 1.0  # seconds: a pause or a limit reaches every claiming server this soon
FULL_POLL = 0.25  # seconds: a full limited queue is tried again (another server's slot)
MIN_POLL = 0.01
HOST = socket.gethostname()


class Gate:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.published = False  # our file's [limits] not yet written to the database
        self.loaded_at = -math.inf
        self.state: dict[str, flow_store.QueueFlow] = {}
        self.skip: list[str] = []  # paused or limited: not for the ordinary claim
        self.limited: list[str] = []  # limited, not paused, taken here (rotated for fairness)
        self.next_try: dict[str, float] = {}  # per limited queue, monotonic
        self.held: dict[TaskId, str] = {}  # limited tasks claimed here, not yet written
        self.freed: set[TaskId] = set()  # of those, the ended ones already counted as free
        self.full: set[str] = set()  # queues whose last claim found no free slot
        self.successor: dict[TaskId, TaskId] = {}  # an ended slot holder -> who took it over
        self.handed: Counter[str] = Counter()  # per queue, slots handed on since its claim
        self.seconds: dict[str, float] = {}  # per queue, moving average run time of ours

    def reconfigure(self, config: Config) -> None:
        self.config = config
        self.published = False
        self.changed()

    def changed(self) -> None:
        """A NOTIFY said pauses or limits changed: read them before the next claim."""
        self.loaded_at = -math.inf

    def wake(self, queue: str | None = None) -> None:
        """New tasks (in ``queue``, or anywhere): try the limited queues that were empty."""
        for name, at in self.next_try.items():
            if at == math.inf and queue in (None, name):
                self.next_try[name] = 0.0

    def due(self, now: float) -> bool:
        """A limited queue may be claimed now."""
        return any(at <= now for at in self.next_try.values())

    def deadlines(self, now: float) -> list[float]:
        """When to claim again; a queue already due waits for room, which a worker's message
        brings (a pass), else it is looked at again after ``FULL_POLL``."""
        return [
            at if at > now else now + FULL_POLL for at in self.next_try.values() if at < math.inf
        ]

    # --- pauses and limits ----------------------------------------------------------------

    def refresh(self, link: Link, now: float, ledger: Ledger, server_id: int) -> bool:
        """Read the pauses and limits when they may be stale (first declaring our file's
        ``[limits]``, at start and after a reload); give back what we hold unstarted when a
        queue we take was just paused. True when a queue was resumed or lost its limits: the
        ordinary claim takes it again."""
        if now - self.loaded_at < REFRESH:
            return False
        state = link.call(lambda conn: self._load(conn, server_id))
        if state is None:
            return False  # database away: the link retries
        self.loaded_at = now
        takes = self.config.queues
        mine = sorted(q for q in state if not takes or q in takes)
        paused = {q for q in mine if state[q].paused}
        newly = paused - {q for q, f in self.state.items() if f.paused}
        moved = {q for q, f in self.state.items() if state.get(q) != f}  # limits changed
        if moved and ledger.ahead:  # what was taken ahead under the old limits goes back
            ledger.release_ahead(lambda job: job.queue in moved, now)
        self.state = state
        freed = bool(set(self.skip) - state.keys())
        self.skip = sorted(state)
        limited = [q for q in mine if q not in paused and not state[q].limits.empty]
        if set(limited) != set(self.limited):
            self.limited = limited
        self.next_try = {q: self.next_try.get(q, 0.0) for q in self.limited}
        if newly:
            logger.info("queue(s) {} paused: nothing new starts there", ", ".join(sorted(newly)))
            ledger.release_buffer(now)  # what sits here unstarted goes back (re-claimed soon)
        if self.held:
            known = ledger.ids()
            self.held = {i: q for i, q in self.held.items() if i in known}
            self.freed &= self.held.keys()
            self.successor = {a: b for a, b in self.successor.items() if a in known}
        return freed

    def _load(self, conn: Any, server_id: int) -> dict[str, flow_store.QueueFlow]:
        if not self.published:
            declare_file_limits(conn, self.config, server_id)
            self.published = True
        return flow_store.flow_state(conn)

    # --- the limited claim ----------------------------------------------------------------

    def claim(self, link: Link, now: float, server_id: int, room: int, ledger: Ledger) -> int:
        """Claim of the limited queues that are due what the workers can start now (``room``
        less the limited jobs still buffered); the jobs go to the front of the buffer."""
        if not self.limited:
            return 0
        ended = self._ended(ledger)
        fresh = [i for i in ended if i not in self.freed]
        if fresh:  # a slot of ours is free: a full queue may take more at once
            self.freed.update(fresh)
            for queue in {self.held[i] for i in fresh} & self.full:
                self.next_try[queue] = min(self.next_try[queue], now)
        due = [q for q in self.limited if self.next_try[q] <= now]
        want = room - sum(1 for job in ledger.buffer if job.id in self.held)
        aheads = self._aheads(due, ledger, want)
        if not due or (want <= 0 and not any(n > 0 for n in aheads)):
            return 0
        timeout = self.config.task_timeout
        claimed = link.call(
            lambda conn: flow_store.claim_limited(
                conn, server_id, due, want, timeout, ended, aheads
            )
        )
        if claimed is None:
            return 0
        for queue, retry_in in claimed.retry_in.items():
            self.handed[queue] = 0
            self.next_try[queue] = policy.next_limited_try(retry_in, now, FULL_POLL)
            if retry_in is not None and retry_in < 0:
                self.full.add(queue)
            else:
                self.full.discard(queue)
        self._watch_delayed(link, now, [q for q, r in claimed.retry_in.items() if r is None])
        self.held.update((job.id, job.queue) for job in claimed.jobs + claimed.ahead)
        ledger.claimed_first(claimed.jobs)
        ledger.ahead.extend(claimed.ahead)
        if log.debug_events:
            for job in claimed.jobs + claimed.ahead:
                log.event("claimed", job.id).debug("task {} claimed", job.name)
        self.limited = self.limited[1:] + self.limited[:1]
        return len(claimed.jobs) + len(claimed.ahead)

    def hand_on(self, task_id: TaskId, seconds: float, ledger: Ledger, now: float) -> None:
        """A task ended after running ``seconds`` (its outcome just went to the outbox): its
        queue's run time is averaged, and if it held a slot of a queue we claimed ahead in,
        the first task taken ahead there takes the slot over and goes to the front of the
        buffer. The queue is claimed again for new ones ahead once half of those it had went
        (a claim per slot freed would keep the loop busy in claims)."""
        queue = self.held.get(task_id)
        if queue is None:
            return
        self.seconds[queue] = policy.moving_average(self.seconds.get(queue), seconds)
        if not ledger.ahead or queue not in self.next_try:
            return
        job = next((j for j in ledger.ahead if j.queue == queue), None)
        if job is None:
            return
        ledger.ahead.remove(job)
        ledger.claimed_first([job])
        ledger.outbox.hand_on(job.id, now)
        self.successor[task_id] = job.id
        self.handed[queue] += 1
        if self.handed[queue] >= sum(1 for j in ledger.ahead if j.queue == queue):
            self.next_try[queue] = min(self.next_try[queue], now)

    def _aheads(self, due: list[str], ledger: Ledger, want: int) -> list[int]:
        """Per due queue, how many more to claim ahead: two per slot held here (a slot
        holder buffered or with a worker) less those already taken ahead. A queue whose
        tasks are not known to be short gets ``-want``, which turns reaching ahead off in
        ``qsup_claim_limited`` (it reaches ahead only while aheads[i] plus what it took, at
        most ``want``, is positive): a long task's successor taken ahead would wait here
        while a slot another server frees stays empty."""
        active = Counter(self.held[i] for i in ledger.assigned_ids() if i in self.held)
        have = Counter(job.queue for job in ledger.ahead)
        off = -max(want, 1)
        return [
            max(0, 2 * active[q] - have[q]) if policy.reaches_ahead(self.seconds.get(q)) else off
            for q in due
        ]

    def _ended(self, ledger: Ledger) -> list[TaskId]:
        """Our limited tasks whose end is known here but not written yet: their slots are
        free (the database still shows them held), unless a successor took one over and has
        not ended yet."""
        if not self.held:
            return []
        boxes = [ledger.outbox] + ([ledger.writing] if ledger.writing is not None else [])
        ended = {i for box in boxes for i in box.task_ids() - box.running.keys() if i in self.held}
        return [i for i in ended if self._chain_ended(i, ended)]

    def _chain_ended(self, task_id: TaskId, ended: set[TaskId]) -> bool:
        after = self.successor.get(task_id)
        while after is not None:
            if after not in ended:
                return False
            after = self.successor.get(after)
        return True

    def _watch_delayed(self, link: Link, now: float, emptied: list[str]) -> None:
        """Limited queues with nothing due: wake when their next delayed task is (retries,
        ``_delay``), as :meth:`Intake.check_next_due` does for the others."""
        if not emptied:
            return
        due = link.call(lambda conn: repo.next_due_in(conn, emptied))
        if due is not None:
            for queue in emptied:
                self.next_try[queue] = now + max(MIN_POLL, due)


def declare_file_limits(conn: Any, config: Config, server_id: int) -> None:
    """Declare our file's ``[limits]`` (see ``flow_store.declare_file_limits``) and say what
    came of it: a queue that had no file limits took ours (INFO); one whose file limits in
    force differ keeps them (WARNING naming the queue, both values and both sources): what is
    in force changes only by an explicit act, never because a server started."""
    limits = config.limits
    if not limits:
        flow_store.declare_file_limits(conn, server_id, {}, "", config.wake_channel)
        kept = sorted(q for q, f in flow_store.flow_state(conn).items() if not f.limits.empty)
        log.event("limits_none").log(
            "INFO" if kept else "DEBUG",
            "no [limits] in this server's configuration: the limits in force are kept ({})",
            ", ".join(kept) or "none",
        )
        return
    source = f"{config.sources.get('limits', 'the file')} of server {server_id} on {HOST}"
    taken = flow_store.declare_file_limits(conn, server_id, limits, source, config.wake_channel)
    in_force = flow_store.file_limits_in_force(conn, sorted(limits))
    for queue, ours in sorted(limits.items()):
        if queue in taken:
            log.event("limits_adopted").info(
                "limits of queue {} from {}: {}", queue, source, flow.describe(ours)
            )
            continue
        now = in_force.get(queue)
        if now is None or now.limits == ours:
            continue
        log.event("limits_disagree").bind(queue=queue).warning(
            "queue {}: this server's file says {} ({}) but {} is in force ({}); kept: change it"
            " with `qsup queue limit` or `qsup queue limits --apply --config FILE`",
            queue,
            flow.describe(ours),
            source,
            flow.describe(now.limits),
            now.source or "unknown source",
        )
