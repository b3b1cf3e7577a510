"""Issue 11, finding 17: concurrent signups for one new address all get the signup answer.

The attack: on PostgreSQL, two signups for the same new address at once both found no account,
both inserted, and the loser's unique violation was a 500 (6 of 30 tries): an error where every
other signup answers 201, and an enumeration signal. Now the losing insert rolls back to a
savepoint and the signup ends as if the other had come first ("account exists" to the owner).
Real concurrency: threads with their own database connections, released together by a barrier.
"""
import threading
import uuid

import pytest
from django.db import connection
from django.test import Client

from agent_bridge.models import OutboxEvent
from identity.models import User

pytestmark = [pytest.mark.security, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TRIES = 30
RACERS = 4


def race(email: str) -> list[int]:
    barrier = threading.Barrier(RACERS)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def signup(i: int) -> None:
        try:
            body = {"username": f"racer{i}", "email": email, "password": "a-long-passphrase-42"}
            barrier.wait(timeout=30)
            statuses.append(Client().post("/api/signup/", body, content_type="application/json").status_code)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=signup, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return statuses


def test_concurrent_signups_for_one_new_address_all_answer_201(settings) -> None:
    settings.THROTTLING_ENABLED = False
    outcomes = []
    for _ in range(TRIES):
        email = f"race-{uuid.uuid4().hex[:10]}@example.com"
        outcomes.append((email, race(email)))
    failures = [(email, statuses) for email, statuses in outcomes if statuses != [201] * RACERS]
    assert not failures, f"{len(failures)} of {TRIES} races had another answer than 201: {failures[:5]}"
    for email, _ in outcomes:
        [user] = User.objects.filter(email=email)
        # One account, one verification email, and an "account exists" email per losing racer.
        kinds = sorted(e.data["kind"] for e in OutboxEvent.objects.filter(type="email.requested", uid=user.uid))
        assert kinds == ["account_exists"] * (RACERS - 1) + ["verify"], (email, kinds)
        assert OutboxEvent.objects.filter(type="user.registered", uid=user.uid).count() == 1
