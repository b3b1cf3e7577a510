"""The double's error answers and the parsing of what clients send it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class HttpError(Exception):
    """An error answer; raised anywhere in a handler, turned into JSON once."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def invalid(detail: str) -> HttpError:
    return HttpError(422, "INVALID_PAYLOAD", detail)


def user_not_found() -> HttpError:
    return HttpError(404, "USER_NOT_FOUND", "User not found")


def canonical_uid(raw: str) -> str:
    """The Agent declares ``uid: UUID`` in its paths, so anything else is a 422."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise invalid(f"uid must be a UUID, got {raw!r}") from None


def require_object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid(f"{what} must be a JSON object")
    return body


def str_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(f"{key} must be a list of strings")
    return list(value)


def str_dict(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key, {})
    if not isinstance(value, dict):
        raise invalid(f"{key} must be an object")
    return dict(value)


def parse_bool(raw: str, name: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise invalid(f"{name} must be a boolean")


def parse_int(raw: str, name: str, *, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"{name} must be an integer") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise invalid(f"{name} must be {bounds}")
    return value
