"""The ground truth of a chaos run: what the API acknowledged (2xx), user by user."""

import copy
import threading
from dataclasses import dataclass, field
from typing import Any

EMPTY_ALLERGIES: dict[str, Any] = {"confirmed": [], "intolerances": [], "severity": {}}


def merge_preferences(base: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """The Agent's documented merge, written again here as an independent oracle.

    Objects merge recursively, lists are unioned keeping the first occurrence's order, any other
    value (or a change of type) replaces the old one.
    """
    result = copy.deepcopy(base)
    for key, new in delta.items():
        old = result.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            result[key] = merge_preferences(old, new)
        elif isinstance(old, list) and isinstance(new, list):
            result[key] = old + [item for i, item in enumerate(new) if item not in old and item not in new[:i]]
        else:
            result[key] = copy.deepcopy(new)
    return result


def patch_preferences(base: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """The API's documented PATCH /api/preferences/, written again here as an independent oracle:
    each key given replaces the stored value whole, `null` removes the key, others are kept.
    The backend then makes the Agent hold the same (it resets what the Agent's merge cannot remove)."""
    result = {key: copy.deepcopy(value) for key, value in base.items() if key not in delta}
    result.update({key: copy.deepcopy(value) for key, value in delta.items() if value is not None})
    return result


def allergy_state(payload: dict[str, Any]) -> dict[str, Any]:
    """The comparable part of an allergy profile (API answer, Agent profile or DB row)."""
    return {
        "confirmed": list(payload.get("confirmed") or []),
        "intolerances": list(payload.get("intolerances") or []),
        "severity": dict(payload.get("severity") or {}),
    }


@dataclass
class UserRecord:
    email: str
    username: str
    password: str
    uid: str | None = None  # learnt at login (auth_id)
    token: str | None = None
    signed_up: bool = False  # the signup was acknowledged
    signed_up_at: float = 0.0
    verified_by: str = ""  # "email" | "db" once verified
    deleted: bool = False  # the deletion was acknowledged
    allergy_history: list[dict[str, Any]] = field(default_factory=list)  # acknowledged states, in order
    allergy_writes: int = 0
    preference_deltas: list[dict[str, Any]] = field(default_factory=list)
    merge_mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def expected_allergies(self) -> dict[str, Any]:
        return self.allergy_history[-1] if self.allergy_history else copy.deepcopy(EMPTY_ALLERGIES)

    @property
    def expected_preferences(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for delta in self.preference_deltas:
            merged = patch_preferences(merged, delta)
        return merged

    @property
    def active(self) -> bool:
        return self.token is not None and not self.deleted


class Ledger:
    """Every user of the run and the counters of what was tried and acknowledged; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users: list[UserRecord] = []
        self.acknowledged: dict[str, int] = {}
        self.attempts: dict[str, int] = {}
        self.indeterminate: dict[str, int] = {}  # connection errors / timeouts: outcome unknown, retried
        self.server_errors: list[dict[str, Any]] = []  # 5xx answers: never expected
        self.rejected: list[dict[str, Any]] = []  # unexpected 4xx answers

    def add_user(self, user: UserRecord) -> None:
        with self.lock:
            self.users.append(user)

    def count(self, bucket: str, action: str) -> None:
        with self.lock:
            counter = getattr(self, bucket)
            counter[action] = counter.get(action, 0) + 1

    def note(self, bucket: str, entry: dict[str, Any]) -> None:
        with self.lock:
            getattr(self, bucket).append(entry)

    def snapshot_users(self) -> list[UserRecord]:
        with self.lock:
            return list(self.users)
