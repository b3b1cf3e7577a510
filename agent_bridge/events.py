"""The event contract between this backend and its consumer: one declared payload per type.

Every event is one JSON envelope (DESIGN.md §5):
{"id", "type", "schema", "occurred_at", "uid", "data"}, where `data` is the type's payload
below and `schema` its version. The receivers build payloads from these classes, the outbox
refuses data that does not match its type, and `scripts/gen_event_docs.py` renders the
catalogue (docs/events.md) from them.

Payloads carry no personal data: handlers send the state read from the database when they run
(an event only says "this changed, at this revision"), so neither the outbox, the broker nor a
dead letter holds a copy of anyone's allergies, preferences or address.
"""
import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypedDict


class Payload:
    """Base of the declared payloads; the docstring of each is its meaning in the catalogue."""

    TYPE: ClassVar[str]
    SCHEMA: ClassVar[int] = 1
    # Delivered before events of a larger number (fairness: a user's allergies are a safety
    # matter and never wait behind anyone's flood of preference changes).
    PRIORITY: ClassVar[int] = 1
    # Pending events of one user and this type can be delivered by one handler call: the
    # handler sends the state read when it runs, which covers every change committed before.
    COALESCE: ClassVar[bool] = True
    # An example for the catalogue (field → value); empty payloads need none.
    EXAMPLE: ClassVar[dict[str, Any]] = {}

    def as_data(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class UserRegistered(Payload):
    """An account was created: create the user at the Agent."""

    TYPE = "user.registered"


@dataclass(frozen=True)
class EmailRequested(Payload):
    """Send an email (verification, account exists, password reset)."""

    TYPE = "email.requested"
    COALESCE = False  # each one is a mail of its own
    EXAMPLE = {"kind": "verify"}
    kind: str


@dataclass(frozen=True)
class AllergiesReplaced(Payload):
    """The allergy profile changed: send its full current state to the Agent."""

    TYPE = "allergies.replaced"
    PRIORITY = 0
    SCHEMA = 2  # 1 also carried the profile itself
    EXAMPLE = {"revision": 7}
    revision: int


@dataclass(frozen=True)
class PreferencesUpdated(Payload):
    """Preferences were merged: send the full current preferences to the Agent."""

    TYPE = "preferences.updated"
    SCHEMA = 2  # 1 also carried the merged delta
    EXAMPLE = {"revision": 3}
    revision: int


@dataclass(frozen=True)
class InteractionsClearRequested(Payload):
    """The user cleared their history: clear it at the Agent."""

    TYPE = "interactions.clear_requested"


@dataclass(frozen=True)
class InteractionsRefreshRequested(Payload):
    """The local history mirror is stale: fetch it from the Agent."""

    TYPE = "interactions.refresh_requested"


@dataclass(frozen=True)
class UserDeleted(Payload):
    """The account was deleted: erase the user at the Agent."""

    TYPE = "user.deleted"


@dataclass(frozen=True)
class AgentReadBackDue(Payload):
    """An Agent call's outcome was unknown: read the user back and compare (delayed; one step of a chain)."""

    TYPE = "agent.read_back_due"
    COALESCE = False  # each is one step of a chain, due at its own time
    EXAMPLE = {"chain": "9b2f0c1e-4d3a-4b5c-8e7f-0a1b2c3d4e5f", "step": 0, "repairs": 0}
    chain: str
    step: int
    repairs: int = 0


@dataclass(frozen=True)
class AgentResyncRequested(Payload):
    """Push the user's full current state to the Agent (resync_agent, or a drift repair)."""

    TYPE = "agent.resync_requested"
    EXAMPLE = {"reason": "resync"}
    reason: str = ""


PAYLOADS: dict[str, type[Payload]] = {
    cls.TYPE: cls
    for cls in (
        UserRegistered,
        EmailRequested,
        AllergiesReplaced,
        PreferencesUpdated,
        InteractionsClearRequested,
        InteractionsRefreshRequested,
        UserDeleted,
        AgentReadBackDue,
        AgentResyncRequested,
    )
}

USER_REGISTERED = UserRegistered.TYPE
EMAIL_REQUESTED = EmailRequested.TYPE
ALLERGIES_REPLACED = AllergiesReplaced.TYPE
PREFERENCES_UPDATED = PreferencesUpdated.TYPE
INTERACTIONS_CLEAR_REQUESTED = InteractionsClearRequested.TYPE
INTERACTIONS_REFRESH_REQUESTED = InteractionsRefreshRequested.TYPE
USER_DELETED = UserDeleted.TYPE
AGENT_READ_BACK_DUE = AgentReadBackDue.TYPE
AGENT_RESYNC_REQUESTED = AgentResyncRequested.TYPE

EVENT_TYPES: dict[str, str] = {
    event_type: " ".join((cls.__doc__ or "").split()) for event_type, cls in PAYLOADS.items()
}


class UnknownPayload(ValueError):
    """Data that is not the declared payload of its event type."""


def payload_check(event_type: str, data: dict[str, Any]) -> Payload:
    """The declared payload for `data`; raises UnknownPayload for an undeclared type or shape."""
    cls = PAYLOADS.get(event_type)
    if cls is None:
        raise UnknownPayload(f"no payload declared for event type {event_type!r}")
    try:
        return cls(**data)  # type: ignore[call-arg]
    except TypeError as exc:
        raise UnknownPayload(f"{event_type}: {exc}") from None


HIGH_PRIORITY_TYPES = tuple(t for t, cls in PAYLOADS.items() if cls.PRIORITY == 0)
COALESCING_TYPES = tuple(t for t, cls in PAYLOADS.items() if cls.COALESCE)


def schema_of(event_type: str) -> int:
    cls = PAYLOADS.get(event_type)
    return cls.SCHEMA if cls is not None else 1


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
        "schema": schema_of(event_type),
        "occurred_at": occurred_at.isoformat().replace("+00:00", "Z"),
        "uid": str(uid) if uid else None,
        "data": data,
    }
