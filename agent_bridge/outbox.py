"""Writes to the transactional outbox. Callers must already be inside transaction.atomic()."""
import uuid
from typing import Any

from django.db import connection

from agent_bridge.models import OutboxEvent
from project.tracing import current_traceparent


class OutboxOutsideTransaction(RuntimeError):
    """An event would not be atomic with the change it reports."""


def outbox_event_add(*, event_type: str, uid: uuid.UUID | None, data: dict[str, Any]) -> OutboxEvent:
    if not connection.in_atomic_block:
        raise OutboxOutsideTransaction(f"{event_type} must be written inside the domain change's transaction")
    return OutboxEvent.objects.create(type=event_type, uid=uid, data=data, traceparent=current_traceparent())
