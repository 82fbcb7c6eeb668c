"""The OpenAPI document names exactly the app's routes and methods (no database needed: the
pool opens only in the lifespan)."""

from __future__ import annotations

import re

import pytest
from starlette.routing import Route

from qsup.http.app import create_app
from qsup.http.openapi import openapi_endpoint
from qsup.settings import Config

URL = "postgresql://nobody@127.0.0.1:1/none"


def app_operations(protect_reads: bool = False) -> set[tuple[str, str]]:
    app = create_app(Config(database_url=URL, protect_reads=protect_reads), URL)
    return {
        (re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path), method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }


def document_operations() -> set[tuple[str, str]]:
    app = create_app(Config(database_url=URL), URL)
    doc = app.state.openapi
    return {(path, method) for path, ops in doc["paths"].items() for method in ops}


@pytest.mark.parametrize("protect_reads", [False, True])
def test_openapi_paths_and_methods_are_the_routes(protect_reads: bool) -> None:
    routes = app_operations(protect_reads)
    assert ("/api/tasks", "post") in routes and ("/api/schedules/{name}/run", "post") in routes
    assert document_operations() == routes


def test_the_endpoint_serves_the_document() -> None:
    app = create_app(Config(database_url=URL), URL)
    served = [r for r in app.routes if isinstance(r, Route) and r.endpoint is openapi_endpoint]
    assert [r.path for r in served] == ["/api/openapi.json"]
