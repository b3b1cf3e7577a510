"""Writes to the transactional outbox. Callers must already be inside transaction.atomic()."""
import uuid
from datetime import datetime
from typing import Any

from django.db import connection

from agent_bridge.models import OutboxEvent
from project.tracing import current_traceparent


class OutboxOutsideTransaction(RuntimeError):
    """An event would not be atomic with the change it reports."""


def outbox_event_add(
    *, event_type: str, uid: uuid.UUID | None, data: dict[str, Any], not_before: datetime | None = None
) -> OutboxEvent:
    """Add an event; `not_before` delays it (neither the embedded bus nor the relay takes it earlier)."""
    if not connection.in_atomic_block:
        raise OutboxOutsideTransaction(f"{event_type} must be written inside the domain change's transaction")
    extra = {"available_at": not_before} if not_before is not None else {}
    return OutboxEvent.objects.create(type=event_type, uid=uid, data=data, traceparent=current_traceparent(), **extra)
