"""``GET /api/series``: the per-minute series of outcomes (``qsup.series``), what the
dashboard's charts read (1 h, 24 h, 7 d by queue)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from qsup import series
from qsup.http.backend import backend_of
from qsup.http.common import JSON, bad, parse_int, text_param

DEFAULT_SPAN = timedelta(hours=1)
MAX_SPAN = timedelta(days=31)
STEP_DEFAULT, STEP_MAX = 60, 7 * 86400


def parse_since(raw: str | None, now: datetime) -> datetime:
    """An ISO 8601 time with its zone, at most :data:`MAX_SPAN` ago (default: an hour)."""
    if raw is None:
        return now - DEFAULT_SPAN
    try:
        since = datetime.fromisoformat(raw)  # typed: an empty value is an error too
    except ValueError:
        raise bad("since: expected an ISO 8601 time with a zone, e.g. 2026-01-31T12:00Z") from None
    if since.tzinfo is None:
        raise bad("since: give the time zone (e.g. 2026-01-31T12:00Z)")
    return max(since, now - MAX_SPAN)


def series_endpoint(request: Request) -> Response:
    queue = text_param(request, "queue")
    step = parse_int(request, "step", STEP_DEFAULT, 60, STEP_MAX)
    since = parse_since(request.query_params.get("since"), datetime.now(UTC))
    with backend_of(request).connection() as conn:
        points = series.read(conn, step, queue, since)
    return JSON({"since": since, "step": step, "queue": queue, "series": points})
