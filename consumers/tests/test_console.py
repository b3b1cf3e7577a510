"""The operator's page in the admin: figures by type, dead-letter groups with a replay."""
import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from agent_bridge import events
from agent_bridge.models import OutboxEvent
from consumers.models import DeadLetter
from consumers.tests.conftest import dead_event

pytestmark = pytest.mark.django_db
URL = "/admin/operations/"
REASON = "AgentAuthError 401 INVALID_SERVICE_TOKEN"


def test_the_page_shows_backlog_and_dead_letters_by_type(admin_client) -> None:
    OutboxEvent.objects.create(type=events.ALLERGIES_REPLACED)
    dead_event(reason=f"{REASON}: refused")

    response = admin_client.get(URL)

    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-type="allergies.replaced"' in page and REASON in page and "Replay 1" in page
    assert reverse("admin:allergies_allergyprofile_changelist") + "?sync_state=failing" in page
    assert URL in admin_client.get("/admin/").content.decode()  # linked from the admin's index


def test_replaying_a_group_requeues_its_dead_letters(admin_client, settings) -> None:
    settings.AMQP_URL = ""
    chosen = dead_event(reason=f"{REASON}: refused")
    other = dead_event(reason="AgentUnavailable 503 AGENT_UNAVAILABLE: down")

    response = admin_client.post(URL, {"type": events.USER_REGISTERED, "reason": REASON}, follow=True)

    assert "replayed 1" in response.content.decode()
    assert OutboxEvent.objects.get(pk=chosen.pk).status == OutboxEvent.Status.PENDING
    assert list(DeadLetter.objects.values_list("event_id", flat=True)) == [other.event_id]


def test_staff_need_the_dead_letter_permissions(client) -> None:
    from identity.models import User

    staff = User.objects.create_user(email="staff@example.com", password="x-long-passphrase-1", username="staff")
    User.objects.filter(pk=staff.pk).update(is_staff=True)
    assert client.get(URL).status_code == 302  # not logged in: the admin's login page
    client.force_login(staff)
    assert client.get(URL).status_code == 403

    staff.user_permissions.add(Permission.objects.get(codename="view_deadletter"))
    dead_event(reason=f"{REASON}: refused")
    page = client.get(URL)
    assert page.status_code == 200 and "Replay 1" not in page.content.decode()
    assert client.post(URL, {"type": events.USER_REGISTERED, "reason": REASON}).status_code == 403
    assert DeadLetter.objects.count() == 1


def test_the_page_shows_partitions_and_verification(admin_client) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from agent_bridge.models import AgentDriftCount, PartitionLease

    later = timezone.now() + timedelta(seconds=30)
    PartitionLease.objects.create(name="kairos.work.0", owner="host:1:a", expires_at=later)
    PartitionLease.objects.create(name="kairos.work.1", owner="", expires_at=None)
    AgentDriftCount.objects.create(kind=AgentDriftCount.Kind.PREFERENCES, count=4)

    page = admin_client.get(URL).content.decode()

    assert "kairos.work.0" in page and "host:1:a" in page
    assert "kairos.work.1" in page and "free" in page
    assert 'class="drift-preferences">preferences: 4<' in page
    assert 'id="verification-figures"' in page
