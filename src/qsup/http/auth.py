"""The admin bearer token, through Starlette's authentication middleware.

:class:`BearerToken` grants the ``admin`` scope to a request carrying ``Authorization: Bearer
$QSUP_ADMIN_TOKEN`` (compared in constant time); anything else stays unauthenticated, so a
wrong token on an open read is ignored. :func:`authorize` then refuses a guarded request: 403
when no token is configured, 401 (with ``WWW-Authenticate``) when it is missing or wrong.
"""

from __future__ import annotations

import hmac

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    BaseUser,
    SimpleUser,
    has_required_scope,
)
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from qsup.http.backend import Backend, backend_of

ADMIN = "admin"
DISABLED = "admin actions are disabled: set QSUP_ADMIN_TOKEN to enable them"
READS_DISABLED = (
    "reads are protected (QSUP_PROTECT_READS) but no QSUP_ADMIN_TOKEN is set: set one to read"
)


class BearerToken(AuthenticationBackend):
    def __init__(self, token: str | None) -> None:
        self.token = token.encode("utf-8") if token else None

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        scheme, _, given = conn.headers.get("authorization", "").partition(" ")
        if (
            self.token is None
            or scheme.lower() != "bearer"
            or not hmac.compare_digest(given.strip().encode("utf-8"), self.token)
        ):
            return None
        return AuthCredentials([ADMIN]), SimpleUser(ADMIN)


def authorize(request: Request, refused: str = DISABLED) -> Backend:
    """The backend, if the request holds the admin scope; else the refusal (403 or 401)."""
    backend = backend_of(request)
    if not backend.config.admin_token:
        raise HTTPException(403, refused)
    if not has_required_scope(request, [ADMIN]):
        raise HTTPException(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    return backend


def reads_guarded(inner: ASGIApp) -> ASGIApp:
    """``inner`` behind the admin token (``protect_reads``)."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            authorize(Request(scope, receive), READS_DISABLED)
        await inner(scope, receive, send)

    return guarded
