"""The Django admin shows dead letters and replays them with the same service as the command."""
import pytest
from django.urls import reverse

from agent_bridge.models import OutboxEvent
from consumers.models import DeadLetter
from consumers.tests.conftest import dead_event

pytestmark = pytest.mark.django_db


def test_the_dead_letter_list_and_the_outbox_list_render(admin_client) -> None:
    row = dead_event()
    dead_list = admin_client.get(reverse("admin:consumers_deadletter_changelist"))
    assert dead_list.status_code == 200 and str(row.event_id) in dead_list.content.decode()
    assert admin_client.get(reverse("admin:agent_bridge_outboxevent_changelist")).status_code == 200


def test_the_replay_action_replays_only_the_selected(admin_client, settings) -> None:
    settings.AMQP_URL = ""
    chosen, other = dead_event(), dead_event()
    chosen_pk = DeadLetter.objects.get(event_id=chosen.event_id).pk

    response = admin_client.post(
        reverse("admin:consumers_deadletter_changelist"),
        {"action": "replay_selected", "_selected_action": [chosen_pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert "Replayed 1, skipped 0 as stale, failed 0." in response.content.decode()
    assert list(DeadLetter.objects.values_list("event_id", flat=True)) == [other.event_id]
    assert OutboxEvent.objects.get(pk=chosen.pk).status == OutboxEvent.Status.PENDING
