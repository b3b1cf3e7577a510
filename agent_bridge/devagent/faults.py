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
