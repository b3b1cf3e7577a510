"""A client for the Agent double's control port, for tests that run the double as a process
(``python -m agent_bridge.devagent``) or in-process (``DevAgentServer``)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import requests


class DevAgentControl:
    """A small client for the control port, for tests that run the double elsewhere."""

    def __init__(self, control_url: str, *, timeout: float = 5.0) -> None:
        self.control_url = control_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        response = self._session.request(method, f"{self.control_url}{path}", json=payload, timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def state(self) -> dict[str, Any]:
        """``{"users": {uid: profile + "interactions"}}``."""
        return self._call("GET", "/state")

    def user(self, uid: str) -> dict[str, Any] | None:
        """One user's profile (with interactions), or None if the double lacks it."""
        return self.state()["users"].get(str(uuid.UUID(str(uid))))

    def requests(self) -> list[dict[str, Any]]:
        return self._call("GET", "/requests")["requests"]

    def reset(self) -> None:
        self._call("POST", "/reset")

    def fault(
        self,
        *,
        latency_ms: int = 0,
        status: int | None = None,
        code: str | None = None,
        fail_count: int | None = None,
        paths: str | None = None,
    ) -> dict[str, Any] | None:
        spec = {
            "latency_ms": latency_ms,
            "status": status,
            "code": code,
            "fail_count": fail_count,
            "paths": paths,
        }
        return self._call("POST", "/fault", spec)["fault"]

    def clear_faults(self) -> None:
        self._call("POST", "/fault", {})

    # --- silent misbehaviour (agent_bridge.devagent.faults.Misbehaviour) -------------
    def misbehave(
        self, *, late_apply: dict[str, Any] | None = None, keep_erased: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Set (replacing) the misbehaviours; see LateApply and KeepErased for the keys."""
        return self._call("POST", "/misbehave", {"late_apply": late_apply, "keep_erased": keep_erased})["misbehaviour"]

    def late_apply(
        self, *, hold_ms: int, paths: str | None = None, count: int | None = 1, answer: str = "late"
    ) -> dict:
        return self.misbehave(late_apply={"hold_ms": hold_ms, "paths": paths, "count": count, "answer": answer})

    def keep_erased(self, *, paths: str | None = None, count: int | None = None) -> dict:
        return self.misbehave(keep_erased={"paths": paths, "count": count})

    def misbehaviour(self) -> dict[str, Any]:
        return self._call("GET", "/misbehave")["misbehaviour"]

    def clear_misbehaviour(self) -> None:
        self._call("POST", "/misbehave", {})

    def forget(self) -> None:
        """The Agent loses every user (faults, misbehaviour and the request log stay)."""
        self._call("POST", "/forget")

    def tamper(self, uid: str, **changes: Any) -> dict[str, Any]:
        """Change a user's copy silently: allergies=None loses them, allergies={...} or
        preferences={...} replace them."""
        return self._call("POST", f"/tamper/{uid}", changes)

    def down(self) -> None:
        self._call("POST", "/down")

    def up(self) -> None:
        self._call("POST", "/up")

    def add_interaction(self, uid: str, item: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/interactions/{uid}", item)

    def wait_until_healthy(self, timeout: float = 10.0) -> None:
        """Poll the control port until it answers (for a freshly spawned process)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.health()
                return
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self._session.close()
