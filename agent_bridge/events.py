"""The event contract between this backend and its consumer: types and the envelope.

Every event is one JSON envelope (DESIGN.md §5):
{"id", "type", "schema", "occurred_at", "uid", "data"}.
"""
import uuid
from datetime import datetime
from typing import Any, TypedDict

SCHEMA_VERSION = 1

USER_REGISTERED = "user.registered"
EMAIL_REQUESTED = "email.requested"
ALLERGIES_REPLACED = "allergies.replaced"
PREFERENCES_UPDATED = "preferences.updated"
INTERACTIONS_CLEAR_REQUESTED = "interactions.clear_requested"
INTERACTIONS_REFRESH_REQUESTED = "interactions.refresh_requested"
USER_DELETED = "user.deleted"
AGENT_READ_BACK_DUE = "agent.read_back_due"
AGENT_RESYNC_REQUESTED = "agent.resync_requested"

EVENT_TYPES: dict[str, str] = {
    USER_REGISTERED: "An account was created: create the user at the Agent.",
    EMAIL_REQUESTED: "Send an email (verification, account exists, password reset).",
    ALLERGIES_REPLACED: "The allergy profile changed: send its full state to the Agent.",
    PREFERENCES_UPDATED: "Preferences were merged: merge them at the Agent.",
    INTERACTIONS_CLEAR_REQUESTED: "The user cleared their history: clear it at the Agent.",
    INTERACTIONS_REFRESH_REQUESTED: "The local history mirror is stale: fetch it from the Agent.",
    USER_DELETED: "The account was deleted: erase the user at the Agent.",
    AGENT_READ_BACK_DUE: (
        "An Agent call's outcome was unknown: read the user back and compare (delayed; one step of a chain)."
    ),
    AGENT_RESYNC_REQUESTED: "Push the user's full current state to the Agent (resync_agent, or a drift repair).",
}


class Envelope(TypedDict):
    id: str
    type: str
    schema: int
    occurred_at: str
    uid: str | None
    data: dict[str, Any]


def make_envelope(
    *, event_id: uuid.UUID, event_type: str, occurred_at: datetime, uid: uuid.UUID | None, data: dict[str, Any]
) -> Envelope:
    return {
        "id": str(event_id),
        "type": event_type,
        "schema": SCHEMA_VERSION,
        "occurred_at": occurred_at.isoformat().replace("+00:00", "Z"),
        "uid": str(uid) if uid else None,
        "data": data,
    }
