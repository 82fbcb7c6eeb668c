"""The OpenAPI 3 document of qsup's HTTP API: its operations, written by hand (they are small
and stable); the paths and methods come from the route table of :mod:`qsup.http.app`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from qsup import flow
from qsup.states import CLEARABLE, STATES

Operation = dict[str, Any]


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = _json({"$ref": "#/components/schemas/Error"}, "Error")
OBJ = {"type": "object"}
NO_NUL = "^[^\\x00]*$"  # PostgreSQL text holds no NUL character


def _path(name: str, schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    """A path parameter of the routes."""
    param: dict[str, Any] = {"name": name, "in": "path", "required": True}
    if description:
        param["description"] = description
    return {**param, "schema": schema}


TASK_ID = _path(
    "task_id",
    {"type": "string", "pattern": "^([0-9a-fA-F]-?){4,32}$"},
    "The full id, or a unique prefix or suffix of its hex digits (4+, dashes optional), such as"
    " the 12-digit short form; several matches are a 400",
)
SECURED: dict[str, Any] = {
    "security": [{"bearer": []}],
    "responses": {"401": ERROR, "403": ERROR, "404": ERROR, "409": ERROR, "400": ERROR},
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _get(
    summary: str,
    schema: dict[str, Any],
    params: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    responses = {"200": _json(schema), "400": ERROR, "404": ERROR, "503": ERROR, **(extra or {})}
    return {"summary": summary, "parameters": params or [], "responses": responses}


def _post(summary: str, params: list[dict[str, Any]], body: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": params,
        "responses": {"200": _json(OBJ), **SECURED["responses"]},
        "security": SECURED["security"],
    }
    if body:
        op["requestBody"] = {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "states": {
                                "type": ["array", "null"],
                                "minItems": 1,
                                "items": {"type": "string", "enum": list(CLEARABLE)},
                                "description": "Default: every state that can be cleared",
                            },
                            "queue": {
                                "type": ["string", "null"],
                                "pattern": NO_NUL,
                                "description": "Default: any queue",
                            },
                        },
                    }
                }
            },
        }
    return op


TASK_LIST_PARAMS = [
    _query("state", {"type": "string", "enum": list(STATES)}, "Only tasks in this state"),
    _query(
        "queue", {"type": "string", "maxLength": 255, "pattern": NO_NUL}, "Only tasks of this queue"
    ),
    _query(
        "name",
        {"type": "string", "maxLength": 255, "pattern": NO_NUL},
        "Task path contains this text",
    ),
    _query("parent", {"type": "string", "format": "uuid"}, "Only children of this task"),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "Page size"),
    _query(
        "cursor",
        {"type": "string", "pattern": "^[A-Za-z0-9_-]*$", "maxLength": 255},
        "next_cursor of the previous page (opaque; anything else is a 400)",
    ),
]
HEALTH = _json(
    {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
            "workers": {"type": "integer"},
            "reason": {"type": "string"},
            "error": {"type": "string"},
        },
    }
)


ENQUEUE: Operation = {
    "summary": "Enqueue a task registered with @task (never an arbitrary import path)",
    "security": SECURED["security"],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["task"],
                    "additionalProperties": False,
                    "properties": {
                        "task": {
                            "type": "string",
                            "minLength": 1,
                            "pattern": NO_NUL,
                            "description": "module:function of a registered task",
                        },
                        "args": {"type": "array", "default": []},
                        "kwargs": {
                            "type": "object",
                            "default": {},
                            "propertyNames": {"pattern": "^[^_]"},
                        },
                        "queue": {
                            "type": ["string", "null"],
                            "pattern": "^[A-Za-z0-9_.:-]{1,255}$",
                        },
                        "priority": {
                            "type": ["integer", "null"],
                            "minimum": -(2**31) + 1,
                            "maximum": 2**31 - 1,
                        },
                        "delay": {
                            "type": ["number", "null"],
                            "minimum": 0,
                            "maximum": 366 * 86400,
                            "description": "Seconds before the task is due",
                        },
                        "headers": {
                            "type": ["object", "null"],
                            "description": "The task's current_task.headers (JSON, no NUL"
                            " character, at most 16 KiB encoded)",
                        },
                        "concurrency_key": {
                            "type": ["string", "null"],
                            "maxLength": 255,
                            "pattern": NO_NUL,
                            "description": "Key of the queue's key_concurrency limit",
                        },
                    },
                }
            }
        },
    },
    "responses": {
        "201": _json(
            {
                "type": "object",
                "required": ["id", "name", "queue", "state"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "name": {"type": "string"},
                    "queue": {"type": "string"},
                    "state": {"type": "string", "enum": list(STATES)},
                },
            },
            "Enqueued",
        ),
        **SECURED["responses"],
    },
}


SCHEDULE_NAME = _path("name", {"type": "string"})
PAGE: Operation = {
    "summary": "The dashboard (HTML; it reads the API below)",
    "responses": {
        "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}
    },
}
LIVEZ = _get("Process liveness", OBJ)
HEALTH_QUEUE: Operation = {
    "summary": "Queue health (seed semantics)",
    "responses": {"200": HEALTH, "503": HEALTH},
}
METRICS: Operation = {
    "summary": "Prometheus metrics",
    "responses": {
        "200": {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
}
LIST_TASKS = _get(
    "Tasks, newest first",
    {
        "type": "object",
        "properties": {
            "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    TASK_LIST_PARAMS,
)
GET_TASK = _get(
    "One task with children and dependencies", {"$ref": "#/components/schemas/Task"}, [TASK_ID]
)
WORKFLOW_ID = _path(
    "workflow_id",
    {"type": "string", "format": "uuid"},
    "The workflow's id, or the full id of one of its steps",
)
WORKFLOW = _get(
    "A workflow with its steps (states, dates, errors); also found by one of its steps' ids",
    OBJ,
    [WORKFLOW_ID],
)
WORKFLOW_CANCEL = _post(
    "Cancel a workflow: the rest stops, the completed steps' compensations run", [WORKFLOW_ID]
)
TASK_LOGS = _get(
    "A task's logs, oldest first",
    OBJ,
    [
        TASK_ID,
        _query(
            "after",
            {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
            "Log id to start after",
        ),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Most rows"),
    ],
)
STATS = _get("Counts, throughput, stuck tasks", OBJ)
SERVERS = _get("Servers and their workers", OBJ)
_SECONDS = {"type": ["number", "null"]}
SERIES_POINT = {
    "type": "object",
    "required": ["at", "queue", "completed", "failed", "retried"],
    "properties": {
        "at": {"type": "string", "format": "date-time"},
        "queue": {"type": "string"},
        **{key: {"type": "integer"} for key in ("completed", "failed", "retried")},
        "run_seconds": {"type": "number", "description": "Sum of the finished tasks' run time"},
        "wait_seconds": {"type": "number", "description": "Sum of their waits, due to started"},
        **{f"{d}_{q}_seconds": _SECONDS for d in ("run", "wait") for q in ("p50", "p95")},
    },
}
SERIES = _get(
    "Outcomes per step and queue from the per-minute series servers write",
    {
        "type": "object",
        "properties": {
            "since": {"type": "string", "format": "date-time"},
            "step": {"type": "integer"},
            "queue": {"type": ["string", "null"]},
            "series": {"type": "array", "items": {"$ref": "#/components/schemas/SeriesPoint"}},
        },
    },
    [
        _query("queue", {"type": "string", "pattern": NO_NUL, "maxLength": 255}, "Only this queue"),
        _query(
            "since",
            {"type": "string", "format": "date-time"},
            "Start (ISO 8601 with a zone; default an hour ago, at most 31 days ago)",
        ),
        _query(
            "step",
            {"type": "integer", "minimum": 60, "maximum": 604800},
            "Seconds per point (default 60)",
        ),
    ],
)
SCHEDULES = _get("Cron schedules", OBJ)
OPENAPI = _get("This document", OBJ)
CLEAR = _post("Delete tasks (by states and queue)", [], body=True)
RETRY = _post("Retry a failed or cancelled task", [TASK_ID])
CANCEL = _post("Cancel a task", [TASK_ID])
STACK: Operation = {
    "summary": "The live Python stack of the worker running a task (async: its coroutine"
    " chain), with its CPU, RSS and run time so far; 409 when it is not running",
    "parameters": [TASK_ID],
    "responses": {"200": _json(OBJ), **SECURED["responses"], "504": ERROR},
    "security": SECURED["security"],
}
PAUSE = _post("Pause a schedule", [SCHEDULE_NAME])
RESUME = _post("Resume a schedule", [SCHEDULE_NAME])
RUN = _post("Run a schedule now", [SCHEDULE_NAME])
QUEUE_NAME = _path("name", {"type": "string", "pattern": flow.QUEUE_NAME.pattern}, "Queue name")
PAUSE_QUEUE = _post("Pause a queue on every server (running tasks finish)", [QUEUE_NAME])
RESUME_QUEUE = _post("Resume a paused queue", [QUEUE_NAME])


def document(paths: dict[str, dict[str, Operation]]) -> dict[str, Any]:
    """The document of ``paths`` (path, then lower-case method, to its operation)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "qsup",
            "version": "1",
            "description": "Health, metrics and the JSON API of a qsup server.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "QSUP_ADMIN_TOKEN"}
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "Task": {
                    "type": "object",
                    "required": ["id", "name", "state", "queue"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "name": {"type": "string"},
                        "state": {"type": "string", "enum": list(STATES)},
                        "queue": {"type": "string"},
                        "cpu_seconds": {"type": ["number", "null"]},
                        "peak_memory_bytes": {"type": ["integer", "null"]},
                        "memory_growth_bytes": {"type": ["integer", "null"]},
                        "crashes": {"type": "integer", "minimum": 0},
                        "crash_causes": {"type": ["string", "null"]},
                        "headers": {"type": ["object", "null"]},
                        "concurrency_key": {"type": ["string", "null"]},
                        "workflow_id": {"type": ["string", "null"], "format": "uuid"},
                        "progress": {  # the task's latest current_task.progress()
                            "type": ["object", "null"],
                            "properties": {
                                "fraction": {"type": ["number", "null"]},
                                "message": {"type": ["string", "null"]},
                                "data": {"type": "object"},
                                "at": {"type": "number"},
                            },
                        },
                        "running_now": {  # while it runs: its worker's last answer
                            "type": ["object", "null"],
                            "properties": {
                                "cpu_seconds": {"type": "number"},
                                "rss_bytes": {"type": "integer"},
                                "running_seconds": {"type": "number"},
                                "sampled_at": {"type": "string", "format": "date-time"},
                            },
                        },
                    },
                },
                "SeriesPoint": SERIES_POINT,
            },
        },
    }


def openapi_endpoint(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)
