"""``GET /api/workflows/{workflow_id}``: a workflow with its steps (also found by a step's id)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from qsup import workflow_store
from qsup.http.backend import backend_of
from qsup.http.common import JSON, parse_uuid


def get_workflow(request: Request) -> Response:
    given = parse_uuid(request.path_params["workflow_id"], "workflow id")
    with backend_of(request).connection() as conn:
        shown = workflow_store.describe(conn, given)
        if shown is None:  # the id of one of its steps?
            of_task = workflow_store.of_task(conn, given)
            shown = workflow_store.describe(conn, of_task) if of_task else None
    if shown is None:
        raise HTTPException(404, f"no workflow {given}")
    return JSON(shown)
