"""The double's memory: users, interactions, the request log and the current fault."""

from __future__ import annotations

import collections
import copy
import hmac
import threading
from datetime import UTC, datetime
from typing import Any

from agent_bridge.devagent.errors import (
    invalid,
    now_iso,
    parse_bool,
    parse_int,
    require_object,
    str_dict,
    str_list,
    user_not_found,
)
from agent_bridge.devagent.faults import Fault, LateApply, Misbehaviour
from allergies.contract import SEVERITY_LEVELS, allergy_flags_for
from identity.preferences import preferences_deep_merge

MAX_LIMIT = 100
REQUEST_LOG_SIZE = 10_000

_INTERACTION_FIELDS = {
    "id",
    "user_query",
    "agent_response",
    "ui_type",
    "restaurant_ids",
    "allergy_warnings_shown",
    "allergens_flagged",
    "prompt_tokens",
    "completion_tokens",
    "created_at",
}


class AgentState:
    """Users, interactions, the request log and the current fault, behind one lock.

    Handlers run on many threads (ThreadingHTTPServer), so every read and
    write goes through the lock and returns deep copies.
    """

    def __init__(self, token: str = "") -> None:
        self.token = token
        self._lock = threading.Lock()
        self._users: dict[str, dict[str, Any]] = {}
        self._interactions: dict[str, list[dict[str, Any]]] = {}
        self._next_interaction_id = 1
        self._log: collections.deque[dict[str, Any]] = collections.deque(maxlen=REQUEST_LOG_SIZE)
        self._fault: Fault | None = None
        self._misbehaviour = Misbehaviour({})

    # --- authentication --------------------------------------------------

    def token_ok(self, presented: str | None) -> bool:
        """The header must be present; its value must match if a token is configured."""
        if presented is None:
            return False
        if not self.token:
            return True
        return hmac.compare_digest(presented.encode(), self.token.encode())

    # --- faults and the request log ---------------------------------------

    def set_fault(self, spec: dict[str, Any]) -> Fault | None:
        fault = Fault(spec) if spec else None
        with self._lock:
            self._fault = fault
        return fault

    def current_fault(self) -> dict[str, Any] | None:
        with self._lock:
            return self._fault.as_dict() if self._fault else None

    def take_fault(self, path: str) -> Fault | None:
        """The fault to apply to this request, counting it against ``fail_count``."""
        with self._lock:
            fault = self._fault
            if fault is None or not fault.matches(path):
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._fault = None
            return fault

    def set_misbehaviour(self, spec: dict[str, Any]) -> dict[str, Any]:
        misbehaviour = Misbehaviour(spec)
        with self._lock:
            self._misbehaviour = misbehaviour
            return misbehaviour.as_dict()

    def current_misbehaviour(self) -> dict[str, Any]:
        with self._lock:
            return self._misbehaviour.as_dict()

    def take_late_apply(self, method: str, path: str) -> LateApply | None:
        """The late apply to hold this request for, counting it (None: handle it now)."""
        with self._lock:
            late = self._misbehaviour.late_apply
            if late is None or late.remaining == 0 or not late.matches(method, path):
                return None
            if late.remaining is not None:
                late.remaining -= 1
            late.held += 1
            return late

    def late_applied(self, late: LateApply) -> None:
        with self._lock:
            late.held -= 1
            late.applied += 1

    def forget(self) -> None:
        """Lose every user and history (a wiped Agent database); faults and the log stay."""
        with self._lock:
            self._users.clear()
            self._interactions.clear()

    def tamper(self, uid: str, body: Any) -> dict[str, Any]:
        """Change a user's copy behind the backend's back (a restore, a hand edit).

        ``{"allergies": null}`` loses the allergies, ``{"allergies": {...}}`` replaces them,
        ``{"preferences": {...}}`` replaces the preferences; ``updated_at`` is left alone.
        """
        body = require_object(body, "body")
        unknown = set(body) - {"allergies", "preferences"}
        if unknown or not body:
            raise invalid("tamper takes allergies and/or preferences")
        allergies = None
        if "allergies" in body:
            given = body["allergies"]
            allergies = self._allergies(require_object(given, "allergies") if given is not None else {})
        preferences = str_dict(body, "preferences") if "preferences" in body else None
        with self._lock:
            user = self._existing(uid)
            if allergies is not None:
                user["allergies"] = allergies
                user["allergy_flags"] = allergy_flags_for(allergies["confirmed"], allergies["intolerances"])
            if preferences is not None:
                user["preferences"] = preferences
            return copy.deepcopy(user)

    def log_request(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._log.append(entry)

    def request_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._log))

    def reset(self) -> None:
        with self._lock:
            self._users.clear()
            self._interactions.clear()
            self._log.clear()
            self._fault = None
            self._misbehaviour = Misbehaviour({})
            self._next_interaction_id = 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            users = {}
            for uid, profile in self._users.items():
                full = copy.deepcopy(profile)
                full["interactions"] = copy.deepcopy(self._sorted_interactions(uid))
                users[uid] = full
            return {"users": users}

    # --- the Agent contract -------------------------------------------------

    def create_user(self, uid: str, body: Any) -> tuple[int, dict[str, Any]]:
        body = require_object(body, "body")
        preferences = str_dict(body, "preferences")
        allergies_in = str_dict(body, "allergies")
        dietary_flags = str_list(body, "dietary_flags")
        vibe_tags = str_list(body, "vibe_tags")
        allergy_flags = str_list(body, "allergy_flags")
        price_tiers = str_list(body, "preferred_price_tiers")
        allergies = (
            self._allergies(allergies_in)
            if allergies_in
            else {
                "confirmed": [],
                "intolerances": [],
                "severity": {},
            }
        )
        if not allergy_flags:
            allergy_flags = allergy_flags_for(allergies["confirmed"], allergies["intolerances"])
        with self._lock:
            if uid in self._users:
                return 200, {"uid": uid, "created": False}
            now = now_iso()
            self._users[uid] = {
                "uid": uid,
                "preferences": preferences,
                "allergies": allergies,
                "allergy_flags": allergy_flags,
                "dietary_flags": dietary_flags,
                "vibe_tags": vibe_tags,
                "preferred_price_tiers": price_tiers,
                "interaction_count": 0,
                "last_active_at": None,
                "created_at": now,
                "updated_at": now,
            }
            self._interactions[uid] = []
            return 201, {"uid": uid, "created": True}

    def get_user(self, uid: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            return 200, copy.deepcopy(self._existing(uid))

    def update_preferences(self, uid: str, body: Any) -> tuple[int, dict[str, Any]]:
        body = require_object(body, "body")
        if "preferences" not in body:
            raise invalid("preferences is required")
        preferences = str_dict(body, "preferences")
        with self._lock:
            user = self._existing(uid)
            user["preferences"] = preferences_deep_merge(user["preferences"], preferences)
            user["updated_at"] = now_iso()
            return 200, {"uid": uid, "updated": True}

    def replace_allergies(self, uid: str, body: Any) -> tuple[int, dict[str, Any]]:
        allergies = self._allergies(require_object(body, "body"))
        flags = allergy_flags_for(allergies["confirmed"], allergies["intolerances"])
        with self._lock:
            user = self._existing(uid)
            user["allergies"] = allergies
            user["allergy_flags"] = flags
            user["updated_at"] = now_iso()
            return 200, {"uid": uid, "allergy_flags": flags, "updated": True}

    def delete_user(self, uid: str) -> tuple[int, None]:
        with self._lock:
            self._existing(uid)
            keep = self._misbehaviour.keep_erased
            if keep is not None and keep.remaining != 0 and keep.matches(f"/users/{uid}"):
                if keep.remaining is not None:
                    keep.remaining -= 1
                keep.kept += 1
                return 204, None  # says erased, keeps everything
            del self._users[uid]
            self._interactions.pop(uid, None)
            return 204, None

    def list_interactions(self, uid: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        limit = parse_int(query.get("limit", ["20"])[-1], "limit", minimum=1, maximum=MAX_LIMIT)
        offset = parse_int(query.get("offset", ["0"])[-1], "offset", minimum=0)
        include_response = parse_bool(query.get("include_response", ["false"])[-1], "include_response")
        with self._lock:
            self._existing(uid)
            items = self._sorted_interactions(uid)
            page = copy.deepcopy(items[offset : offset + limit])
        if not include_response:
            for item in page:
                item["agent_response"] = {}
        return 200, {
            "interactions": page,
            "total": len(items),
            "limit": limit,
            "offset": offset,
        }

    def clear_interactions(self, uid: str) -> tuple[int, None]:
        with self._lock:
            self._existing(uid)
            self._interactions[uid] = []
            return 204, None

    def add_interaction(self, uid: str, body: Any) -> dict[str, Any]:
        """Seed one history item (control port).

        Fields are those of the Agent's ``InteractionSummary`` (seed 000 §9);
        unknown ones are refused so that a typo in a test fails loudly.
        """
        body = require_object(body, "body")
        unknown = set(body) - _INTERACTION_FIELDS
        if unknown:
            raise invalid(f"unknown interaction fields: {sorted(unknown)}")
        created_at = body.get("created_at") or now_iso()
        try:
            datetime.fromisoformat(str(created_at))
        except ValueError:
            raise invalid("created_at must be an ISO 8601 timestamp") from None
        with self._lock:
            user = self._existing(uid)
            item_id = body.get("id")
            if item_id is None:
                item_id = self._next_interaction_id
            elif not isinstance(item_id, int) or isinstance(item_id, bool):
                raise invalid("id must be an integer")
            self._next_interaction_id = max(self._next_interaction_id, item_id) + 1
            item = {
                "id": item_id,
                "uid": uid,
                "user_query": body.get("user_query", ""),
                "agent_response": body.get("agent_response", {}),
                "ui_type": body.get("ui_type"),
                "restaurant_ids": body.get("restaurant_ids", []),
                "allergy_warnings_shown": bool(body.get("allergy_warnings_shown", False)),
                "allergens_flagged": body.get("allergens_flagged", []),
                "prompt_tokens": body.get("prompt_tokens"),
                "completion_tokens": body.get("completion_tokens"),
                "created_at": created_at,
            }
            self._interactions[uid].append(item)
            user["interaction_count"] += 1
            user["last_active_at"] = created_at
            return copy.deepcopy(item)

    # --- helpers (call with the lock held) --------------------------------

    def _existing(self, uid: str) -> dict[str, Any]:
        user = self._users.get(uid)
        if user is None:
            raise user_not_found()
        return user

    def _sorted_interactions(self, uid: str) -> list[dict[str, Any]]:
        def key(item: dict[str, Any]) -> tuple[datetime, int]:
            stamp = datetime.fromisoformat(str(item["created_at"]))
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
            return stamp, int(item["id"])

        # Newest first, as the Agent orders by created_at DESC.
        return sorted(self._interactions.get(uid, []), key=key, reverse=True)

    @staticmethod
    def _allergies(body: dict[str, Any]) -> dict[str, Any]:
        confirmed = str_list(body, "confirmed")
        intolerances = str_list(body, "intolerances")
        severity = str_dict(body, "severity")
        for allergen, level in severity.items():
            if level not in SEVERITY_LEVELS:
                raise invalid(f"severity[{allergen!r}] must be one of {sorted(SEVERITY_LEVELS)}, got {level!r}")
        return {
            "confirmed": confirmed,
            "intolerances": intolerances,
            "severity": severity,
        }
