from unittest import mock

import pytest

from identity import services
from identity.models import AuthToken, User, UserPreferences

pytestmark = pytest.mark.django_db


def test_delete_requires_the_password(auth_client, verified_user, outbox) -> None:
    response = auth_client.delete("/api/account/", {"password": "wrong-wrong"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"]["password"][0]["code"] == "invalid_password"
    assert User.objects.filter(pk=verified_user.pk).exists()
    assert outbox("user.deleted") == []


def test_delete_without_a_body_is_400(auth_client, verified_user) -> None:
    response = auth_client.delete("/api/account/")
    assert response.status_code == 400
    assert "password" in response.json()["errors"]
    assert User.objects.filter(pk=verified_user.pk).exists()


def test_delete_erases_locally_and_raises_the_erasure_event(auth_client, verified_user, password, outbox) -> None:
    uid = verified_user.uid
    services.user_preferences_update(user=verified_user, preferences={"vibes": ["quiet"]})

    response = auth_client.delete("/api/account/", {"password": password}, format="json")

    assert response.status_code == 204
    assert not User.objects.filter(uid=uid).exists()
    assert not AuthToken.objects.exists()
    assert not UserPreferences.objects.exists()
    [event] = outbox("user.deleted")
    assert event.uid == uid
    assert auth_client.get("/api/me/").status_code == 401


def test_deletion_and_its_event_are_atomic(verified_user, password, outbox) -> None:
    """If the event cannot be written, the account is not deleted either."""
    uid = verified_user.uid
    failing = mock.patch("agent_bridge.receivers.outbox_event_add", side_effect=RuntimeError("outbox down"))
    with failing, pytest.raises(RuntimeError):
        services.user_delete(user=verified_user, password=password)
    assert User.objects.filter(uid=uid).exists()
    assert outbox("user.deleted") == []


def test_deletion_writes_its_events_inside_the_transaction(verified_user, password) -> None:
    """user.deleted (the Agent's erasure) and the deletion notice mail, both in the transaction."""
    from django.db import connection

    seen = []

    def record(**kwargs):
        payload = kwargs["payload"]
        seen.append((payload.TYPE, getattr(payload, "kind", None), connection.in_atomic_block))

    with mock.patch("agent_bridge.receivers.outbox_event_add", side_effect=record):
        services.user_delete(user=verified_user, password=password)
    assert seen == [("user.deleted", None, True), ("email.requested", "account_deleted", True)]
