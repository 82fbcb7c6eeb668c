"""``GET /api/workflows/{workflow_id}`` (a workflow with its steps) and ``POST
/api/workflows/{workflow_id}/cancel`` (token required); also found by a step's id."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from qsup import workflow_store
from qsup.errors import QsupError
from qsup.http.auth import authorize
from qsup.http.backend import backend_of
from qsup.http.common import JSON, parse_uuid


def _workflow_id(conn: Any, request: Request) -> uuid.UUID:
    """The path's workflow: by its own id or one of its steps' ids (404 when neither)."""
    given = parse_uuid(request.path_params["workflow_id"], "workflow id")
    if workflow_store.get(conn, given) is not None:
        return given
    found = workflow_store.of_task(conn, given)
    if found is None:
        raise HTTPException(404, f"no workflow {given}")
    return found


def get_workflow(request: Request) -> Response:
    with backend_of(request).connection() as conn:
        shown = workflow_store.describe(conn, _workflow_id(conn, request))
    if shown is None:  # pruned meanwhile
        raise HTTPException(404, "no such workflow")
    return JSON(shown)


def cancel_workflow(request: Request) -> Response:
    backend = authorize(request)
    with backend.connection() as conn:
        workflow_id = _workflow_id(conn, request)
        try:
            workflow_store.cancel_workflow(conn, workflow_id, backend.config.wake_channel)
        except QsupError as exc:  # already ended
            raise HTTPException(409, str(exc)) from None
    return JSON({"id": workflow_id, "state": "cancelled"})
