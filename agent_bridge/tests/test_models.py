"""agent_bridge.models: what a stored outbox row says about itself."""
import uuid

import pytest

from agent_bridge import events
from agent_bridge.models import OutboxEvent

pytestmark = pytest.mark.django_db


def test_the_envelope_carries_the_schema_the_row_was_written_in() -> None:
    """An event still in the outbox when its payload's schema changes keeps its own version."""
    assert events.schema_of(events.ALLERGIES_REPLACED) == 2
    event = OutboxEvent.objects.create(type=events.ALLERGIES_REPLACED, schema=1, uid=uuid.uuid4(), data={"revision": 3})

    envelope = OutboxEvent.objects.get(pk=event.pk).envelope
    assert (envelope["type"], envelope["schema"], envelope["data"]) == ("allergies.replaced", 1, {"revision": 3})
    assert envelope["id"] == str(event.event_id) and envelope["uid"] == str(event.uid)
