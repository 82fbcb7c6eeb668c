"""Request helpers shared by the handlers: JSON responses, query and body parsing, task ids."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from qsup.errors import ConfigError, TaskNotFound
from qsup.task_ids import resolve_task_id


def _default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


class JSON(JSONResponse):
    """JSON that knows uuids, datetimes and decimals."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, default=_default, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")


def error(status: int, message: str, **extra: Any) -> JSON:
    return JSON({"error": message, **extra}, status_code=status)


def bad(message: str) -> HTTPException:
    return HTTPException(400, message)


def parse_uuid(value: str, what: str = "task id") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError):
        raise bad(f"invalid {what}: expected a UUID") from None


def typed_task_id(conn: Any, request: Request) -> uuid.UUID:
    """The path's task id: a full id, or a unique prefix or suffix (see qsup.task_ids)."""
    try:
        return resolve_task_id(conn, request.path_params["task_id"])
    except ConfigError as exc:  # not hex, or several tasks match
        raise bad(str(exc)) from None
    except TaskNotFound as exc:
        raise HTTPException(404, str(exc)) from None


def parse_int(request: Request, key: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad(f"{key}: expected an integer from {low} to {high}") from None
    if not low <= value <= high:
        raise bad(f"{key}: expected an integer from {low} to {high}")
    return value


def text_param(request: Request, key: str) -> str | None:
    value = request.query_params.get(key)
    if value is None or value == "":
        return None
    if "\x00" in value or len(value) > 255:
        raise bad(f"{key}: must be at most 255 characters, without NUL")
    return value


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad("body: expected a JSON object") from None
    if not isinstance(body, dict):
        raise bad("body: expected a JSON object")
    return body
