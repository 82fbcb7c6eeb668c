"""The states of a task, in lifecycle order: the one list the CLI, the HTTP API, its OpenAPI
document and the dashboard (through ``/api/stats``) all use."""

from __future__ import annotations

STATES = ("waiting", "enqueued", "picked_up", "running", "completed", "failed", "cancelled")
CLEARABLE = ("enqueued", "waiting", "failed", "cancelled", "completed")  # never picked up/running
