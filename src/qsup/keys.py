"""The text keys a caller gives a task (``_unique_key``, ``_concurrency_key``), checked once."""

from __future__ import annotations

from typing import Any

from qsup.errors import TaskDefinitionError


def checked_key(option: str, key: Any, max_chars: int) -> str | None:
    """A key option (``_unique_key``, ``_concurrency_key``) as it can be stored: None, or text
    of at most ``max_chars`` characters without NUL or lone surrogates (PostgreSQL's text
    holds neither; keys live in btree indexes, whose entries must stay under 2,704 bytes)."""
    if key is None:
        return None
    if not isinstance(key, str):
        raise TaskDefinitionError(f"{option} must be a string, got {key!r}")
    if len(key) > max_chars or "\x00" in key or not _utf8(key):
        raise TaskDefinitionError(
            f"{option} must be at most {max_chars} characters, without NUL"
            f" or lone surrogates, got {key[:40]!r}{'...' if len(key) > 40 else ''}"
        )
    return key


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
