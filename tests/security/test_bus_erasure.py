"""Issue 11 item 7: after DELETE /api/account/ no table holds a copy of the user's email, allergen
names or preference values; the bus keeps only what the erasure needs (uid, event type).

Copies are planted the way older code made them (schema-1 payloads with the full profile and
the preference delta, a dead letter whose reason quotes the address) next to the events the
current code writes, so the test fails if erasure leaves any of them behind.
"""
import json
import uuid

import pytest
from django.apps import apps
from django.db import connection
from django.utils import timezone

from agent_bridge.delivery import Cause
from agent_bridge.models import OutboxEvent
from agent_bridge.outbox import dead_letter_record
from consumers.models import DeadLetter

pytestmark = pytest.mark.django_db

STREET = "Zyxwvut Street 12"
ALLERGENS = ("sesame", "peanuts")


def every_row_as_text() -> dict[str, list[str]]:
    """Every row of every table the apps define, as text (JSON columns included)."""
    rows: dict[str, list[str]] = {}
    with connection.cursor() as cursor:
        for model in apps.get_models():
            table = model._meta.db_table
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - table names come from the models
            rows[table] = [json.dumps(row, default=str, ensure_ascii=False) for row in cursor.fetchall()]
    return rows


def test_account_deletion_leaves_no_copy_of_personal_data_in_any_table(
    auth_client, verified_user, password, deliver_mail
) -> None:
    uid, email = verified_user.uid, verified_user.email
    assert auth_client.put(
        "/api/allergies/", {"confirmed": ["sesame"], "intolerances": [], "severity": {"sesame": "severe"}},
        format="json",
    ).status_code == 200
    assert auth_client.patch(
        "/api/preferences/", {"preferences": {"location_bias": {"street": STREET}}}, format="json"
    ).status_code == 200
    # Copies as schema 1 wrote them: delivered, dead, and a dead letter quoting the address.
    profile = {"revision": 1, "confirmed": ["peanuts"], "intolerances": [], "severity": {"peanuts": "severe"}}
    OutboxEvent.objects.create(type="allergies.replaced", schema=1, uid=uid, data=profile,
                               status=OutboxEvent.Status.DELIVERED, delivered_at=timezone.now())
    dead = OutboxEvent.objects.create(type="preferences.updated", schema=1, uid=uid,
                                      data={"revision": 1, "delta": {"location_bias": {"street": STREET}}})
    dead_letter_record(envelope=dead.envelope, attempts=3, reason=f"SMTPRecipientsRefused: {email}",
                       cause=Cause.EMAIL)
    pending = OutboxEvent.objects.create(type="allergies.replaced", schema=1, uid=uid, data=profile)
    before = every_row_as_text()
    assert any(STREET in row for rows in before.values() for row in rows)  # the plants are found

    assert auth_client.delete("/api/account/", {"password": password}, format="json").status_code == 204

    from identity.models import MailNotice

    # One copy of the address stays until the deletion notice is mailed to it: its MailNotice row.
    [notice] = MailNotice.objects.all()
    assert (notice.kind, notice.uid) == ("account_deleted", uid)
    assert [message.to for message in deliver_mail()] == [[email]]
    after = every_row_as_text()
    for table, rows in after.items():
        for row in rows:
            assert email.lower() not in row.lower(), (table, row)
            assert STREET not in row, (table, row)
            if table in (OutboxEvent._meta.db_table, DeadLetter._meta.db_table):
                assert not any(name in row for name in ALLERGENS), (table, row)
    # What the erasure itself needs stays: the user.deleted event (uid + type), and the event
    # still in flight (emptied: its handler will find the user gone).
    left = {(row.type, row.status) for row in OutboxEvent.objects.filter(uid=uid)}
    assert ("user.deleted", OutboxEvent.Status.PENDING) in left
    assert OutboxEvent.objects.get(pk=pending.pk).data == {}
    assert not DeadLetter.objects.filter(uid=uid).exists()


def test_a_dead_user_deleted_letter_keeps_only_uid_and_type(verified_user, password) -> None:
    from identity import services

    uid = verified_user.uid
    envelope = {"id": str(uuid.uuid4()), "type": "user.deleted", "uid": str(uid), "data": {"note": "x"}}
    dead_letter_record(envelope=envelope, attempts=5, reason=f"quoting {verified_user.email}", cause=Cause.BROKER)

    services.user_delete(user=verified_user, password=password)

    letter = DeadLetter.objects.get(uid=uid)
    assert (letter.type, letter.envelope["data"]) == ("user.deleted", {})
    assert verified_user.email not in letter.reason


def test_an_erased_email_event_still_in_flight_is_skipped_not_dead_lettered(verified_user, password) -> None:
    """Found by the chaos run: the erasure empties a pending email.requested event (its kind
    included); its handler must find the user gone rather than fail on the missing kind."""
    from agent_bridge.agent_client import AgentClient
    from agent_bridge.delivery import Status
    from consumers import processing
    from identity import services

    pending = OutboxEvent.objects.create(type="email.requested", uid=verified_user.uid, data={"kind": "verify"})
    services.user_delete(user=verified_user, password=password)
    pending.refresh_from_db()
    assert pending.data == {}

    outcome = processing.process_envelope(pending.envelope, attempt=1, agent=AgentClient.from_settings())
    assert outcome.status is Status.SKIPPED
