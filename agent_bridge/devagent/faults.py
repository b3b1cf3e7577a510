"""What the double's main port does wrong on command (set through the control port).

:class:`Fault` makes requests slow or fail with an error status, as a struggling Agent does.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from agent_bridge.devagent.errors import invalid

# The code a fault answers with when it names a status but no code, so that a
# fault looks like what the real Agent (or its proxy) would send.
_DEFAULT_CODES = {
    400: "MISSING_USER_ID",
    401: "INVALID_SERVICE_TOKEN",
    404: "USER_NOT_FOUND",
    422: "INVALID_PAYLOAD",
    429: "RATE_LIMITED",
}


class Fault:
    """What the main port should do wrong, set through ``POST /fault``.

    ``fail_count`` bounds the whole fault (latency and status alike): after
    that many affected requests the double is healthy again.
    """

    _KEYS: ClassVar[set[str]] = {"latency_ms", "status", "code", "fail_count", "paths"}

    def __init__(self, spec: dict[str, Any]) -> None:
        unknown = set(spec) - self._KEYS
        if unknown:
            raise invalid(f"unknown fault keys: {sorted(unknown)}")
        latency = spec.get("latency_ms") or 0
        status = spec.get("status")
        code = spec.get("code")
        fail_count = spec.get("fail_count")
        paths = spec.get("paths")
        if not isinstance(latency, int) or isinstance(latency, bool) or latency < 0:
            raise invalid("latency_ms must be an integer >= 0")
        if status is not None and (not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599):
            raise invalid("status must be an HTTP error status (400-599), or null")
        if code is not None and not isinstance(code, str):
            raise invalid("code must be a string or null")
        if fail_count is not None and (
            not isinstance(fail_count, int) or isinstance(fail_count, bool) or fail_count < 1
        ):
            raise invalid("fail_count must be an integer >= 1, or null")
        if paths is not None:
            if not isinstance(paths, str):
                raise invalid("paths must be a regular expression string")
            try:
                self.pattern: re.Pattern[str] | None = re.compile(paths)
            except re.error as exc:
                raise invalid(f"paths is not a valid regular expression: {exc}") from None
        else:
            self.pattern = None
        self.latency_ms: int = latency
        self.status: int | None = status
        if status is not None and code is None:
            code = "AGENT_UNAVAILABLE" if status >= 500 else _DEFAULT_CODES.get(status, "FAULT")
        self.code: str | None = code
        self.remaining: int | None = fail_count
        self.paths: str | None = paths

    def matches(self, path: str) -> bool:
        return self.pattern is None or self.pattern.search(path) is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "status": self.status,
            "code": self.code,
            "remaining": self.remaining,
            "paths": self.paths,
        }


def _count(spec: dict[str, Any], key: str = "count") -> int | None:
    value = spec.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise invalid(f"{key} must be an integer >= 1, or null")
    return value


def _pattern(spec: dict[str, Any]) -> re.Pattern[str] | None:
    paths = spec.get("paths")
    if paths is None:
        return None
    if not isinstance(paths, str):
        raise invalid("paths must be a regular expression string")
    try:
        return re.compile(paths)
    except re.error as exc:
        raise invalid(f"paths is not a valid regular expression: {exc}") from None


class LateApply:
    """Apply a write after the client gave up: the Agent still working on a request that timed out.

    A matching write (POST/PATCH/DELETE) is held for ``hold_ms`` and then applied, whatever
    the double received meanwhile, so an older state can land after a newer one. ``answer``
    says what the client sees: ``"late"`` (the answer is sent only after the apply, long
    after a client's timeout) or ``"none"`` (the connection is closed at once, unanswered).
    """

    _KEYS: ClassVar[set[str]] = {"hold_ms", "paths", "count", "answer"}
    ANSWERS: ClassVar[tuple[str, ...]] = ("late", "none")

    def __init__(self, spec: dict[str, Any]) -> None:
        unknown = set(spec) - self._KEYS
        if unknown:
            raise invalid(f"unknown late_apply keys: {sorted(unknown)}")
        hold = spec.get("hold_ms")
        if not isinstance(hold, int) or isinstance(hold, bool) or hold < 1:
            raise invalid("late_apply.hold_ms must be an integer >= 1")
        answer = spec.get("answer", "late")
        if answer not in self.ANSWERS:
            raise invalid(f"late_apply.answer must be one of {list(self.ANSWERS)}")
        self.hold_ms: int = hold
        self.answer: str = answer
        self.pattern = _pattern(spec)
        self.paths: str | None = spec.get("paths")
        self.remaining: int | None = _count(spec)
        self.held = 0  # taken and not yet applied
        self.applied = 0

    def matches(self, method: str, path: str) -> bool:
        return method in ("POST", "PATCH", "PUT", "DELETE") and (
            self.pattern is None or self.pattern.search(path) is not None
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "hold_ms": self.hold_ms,
            "answer": self.answer,
            "paths": self.paths,
            "remaining": self.remaining,
            "held": self.held,
            "applied": self.applied,
        }


class KeepErased:
    """Answer ``DELETE /users/{uid}`` with 204 but keep the user: an erasure that did not happen."""

    _KEYS: ClassVar[set[str]] = {"paths", "count"}

    def __init__(self, spec: dict[str, Any]) -> None:
        unknown = set(spec) - self._KEYS
        if unknown:
            raise invalid(f"unknown keep_erased keys: {sorted(unknown)}")
        self.pattern = _pattern(spec)
        self.paths: str | None = spec.get("paths")
        self.remaining: int | None = _count(spec)
        self.kept = 0

    def matches(self, path: str) -> bool:
        return self.pattern is None or self.pattern.search(path) is not None

    def as_dict(self) -> dict[str, Any]:
        return {"paths": self.paths, "remaining": self.remaining, "kept": self.kept}


class Misbehaviour:
    """Silent wrongs, set through ``POST /misbehave``, kept apart from :class:`Fault` (which
    makes the double visibly fail) so a test can combine both."""

    _KEYS: ClassVar[set[str]] = {"late_apply", "keep_erased"}

    def __init__(self, spec: dict[str, Any]) -> None:
        unknown = set(spec) - self._KEYS
        if unknown:
            raise invalid(f"unknown misbehaviour keys: {sorted(unknown)}")
        late, keep = spec.get("late_apply"), spec.get("keep_erased")
        for name, value in (("late_apply", late), ("keep_erased", keep)):
            if value is not None and not isinstance(value, dict):
                raise invalid(f"{name} must be an object or null")
        self.late_apply: LateApply | None = LateApply(late) if late else None
        self.keep_erased: KeepErased | None = KeepErased(keep) if keep is not None else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "late_apply": self.late_apply.as_dict() if self.late_apply else None,
            "keep_erased": self.keep_erased.as_dict() if self.keep_erased else None,
        }
