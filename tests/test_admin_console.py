"""The admin is the operator's console: every list page stays a handful of queries however many
rows it lists (list_select_related, no per-row lookups), so it stays fast with thousands of rows."""
import uuid
from datetime import timedelta

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from agent_bridge.models import InteractionMirror, OutboxEvent
from allergies.models import AllergyProfile
from consumers.models import DeadLetter
from identity.models import AuthToken, User

ROWS = 300
MAX_QUERIES = 12  # session, user, count(s), page, filters: independent of ROWS


@pytest.fixture
def many_rows(db) -> None:
    now = timezone.now()
    users = User.objects.bulk_create(
        User(email=f"user{i}@example.com", username=f"user{i}", password="!") for i in range(ROWS)
    )
    AuthToken.objects.bulk_create(
        AuthToken(user=user, key_hash=uuid.uuid4().hex * 2, expires_at=now + timedelta(days=1)) for user in users
    )
    AllergyProfile.objects.bulk_create(AllergyProfile(user=user, revision=1) for user in users)
    InteractionMirror.objects.bulk_create(InteractionMirror(user=user) for user in users)
    OutboxEvent.objects.bulk_create(
        OutboxEvent(type="user.registered", uid=user.uid, status=OutboxEvent.Status.DELIVERED) for user in users
    )
    DeadLetter.objects.bulk_create(
        DeadLetter(
            event_id=uuid.uuid4(), type="user.registered", uid=user.uid, envelope={}, attempts=1, reason="401",
            first_failed_at=now, last_failed_at=now,
        )
        for user in users
    )


@pytest.mark.parametrize(
    "model", [User, AuthToken, AllergyProfile, InteractionMirror, OutboxEvent, DeadLetter], ids=lambda m: m.__name__
)
def test_list_pages_take_a_bounded_number_of_queries(
    admin_client, many_rows, model, django_assert_max_num_queries
) -> None:
    assert admin.site.is_registered(model)
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")

    with django_assert_max_num_queries(MAX_QUERIES):
        response = admin_client.get(url)

    assert response.status_code == 200
