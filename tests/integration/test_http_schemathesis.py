"""schemathesis against qsup's own OpenAPI document, in-process over ASGI with a real database:
no operation may answer with a server error or outside its documented responses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is missing")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.python.asgi import shutdown_lifespans  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from qsup.http.app import create_app  # noqa: E402
from qsup.settings import Config  # noqa: E402
from tests import tasks  # noqa: E402
from tests.integration.test_http import add_server  # noqa: E402

TOKEN = "schemathesis-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = 40  # per operation; about 20 operations in all


@pytest.fixture
def api_schema(db_url: str, conn: Any, queue: Any) -> Iterator[Any]:
    """The document served by an app whose database holds a few tasks and one schedule."""
    add_server(conn)  # a live server: /health/queue answers 200, not its 503 "unhealthy"
    parent = queue.add_task(tasks.add, 1, 2)
    queue.add_task(tasks.add, 3, 4, _parent=parent, _queue="other")
    nightly = {"name": "nightly", "cron": "0 3 * * *", "task": "tests.tasks:noop"}
    config = Config(database_url=db_url, admin_token=TOKEN, schedules=(nightly,))
    app = create_app(config, db_url)
    try:
        yield schemathesis.openapi.from_asgi("/api/openapi.json", app)
    finally:
        shutdown_lifespans()  # closes the app's pool


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
def test_api_conforms_to_its_openapi_document(case: Any) -> None:
    # A cursor is opaque: one not made by the server is rightly a 400, though it matches the
    # documented pattern. Every other check applies to every operation.
    opaque = (case.query or {}).get("cursor") not in (None, "")
    excluded = [positive_data_acceptance] if opaque else []
    response = case.call_and_validate(headers=AUTH, excluded_checks=excluded)
    assert response.status_code < 500, response.text
