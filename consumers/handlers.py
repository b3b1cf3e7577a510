"""One handler per event type: the Agent call (or email) that an event stands for.

Handlers are idempotent (delivery is at least once) and raise AgentError subclasses or
LeaseBusy; the retry and dead-letter policy lives in consumers.processing.
"""
import uuid
from collections.abc import Callable

from agent_bridge import events
from agent_bridge.agent_client import AgentClient
from agent_bridge.events import Envelope
from agent_bridge.leases import user_lease, user_lease_forget
from identity import selectors as identity_selectors

# A handler returns "delivered" or "skipped" (nothing left to do, e.g. the user is gone).
Handler = Callable[[Envelope, AgentClient], str]
# Called after a failed delivery attempt with the envelope and the error text, e.g. to show
# the user that their allergy profile is not yet at the Agent.
FailureRecorder = Callable[[Envelope, str], None]


def handle_user_registered(envelope: Envelope, agent: AgentClient) -> str:
    uid = uuid.UUID(envelope["uid"])
    with user_lease(uid):
        if not identity_selectors.user_exists(uid=uid):
            return "skipped"  # deleted before we got here: never resurrect it at the Agent
        agent.create_user(uid=str(uid))
    return "delivered"


def handle_user_deleted(envelope: Envelope, agent: AgentClient) -> str:
    uid = uuid.UUID(envelope["uid"])
    with user_lease(uid):
        agent.delete_user(uid=str(uid))  # a 404 counts as done
    user_lease_forget(uid=uid)
    return "delivered"


HANDLERS: dict[str, Handler] = {
    events.USER_REGISTERED: handle_user_registered,
    events.USER_DELETED: handle_user_deleted,
}

FAILURE_RECORDERS: dict[str, FailureRecorder] = {}
