"""An account deletion racing the consumer's writes about the same user.

The consumer adds rows that refer to a user (an empty allergy profile to mark, an interaction
mirror) while the user may be deleting the account. Each test runs the two in two threads, on two
database connections, at the moment that used to fail: the chaos suite's DELETE /api/account/ once
answered 500 when a profile was inserted between the deletion's cascade and its DELETE of the user.
The two-thread tests run on PostgreSQL only: SQLite's IMMEDIATE transactions run one writer at a
time anyway, and the test database (in memory, shared cache) refuses a second writer at once
instead of making it wait.
"""
import threading
import uuid
from collections.abc import Callable

import pytest
from django.db import connection
from django.db.models.signals import post_save
from django.db.models.sql.subqueries import DeleteQuery
from django.utils import timezone

from agent_bridge import services as bridge_services
from agent_bridge import verification
from agent_bridge.models import AgentCopy, InteractionMirror
from allergies import services as allergy_services
from allergies.models import AllergyProfile
from identity import services
from identity.models import User

#: How long a thread is given to finish its write before the other one goes on; a write that the
#: locks make wait is still waiting then, which is the point.
OVERLAP_SECONDS = 0.5

CONSUMER_WRITES: dict[str, Callable[[uuid.UUID], object]] = {
    "profile marked verifying": lambda uid: allergy_services.allergy_sync_record_verifying(uid=uid),
    "profile marked verified": lambda uid: allergy_services.allergy_sync_record_verified(
        uid=uid, at=timezone.now(), resolved=True
    ),
    "read-back started": lambda uid: verification.read_back_start(uid=uid),
    "copy checked equal": lambda uid: verification.check_record(
        verification.CheckResult(uid=uid), source=verification.CheckSource.READ_BACK, repair=True
    ),
    "interaction mirror stored": lambda uid: bridge_services.interaction_mirror_store(uid=uid, items=[], total=0),
}


class InThread:
    """Run `work` on a thread of its own (its own connection), keeping what it raised."""

    def __init__(self, work: Callable[[], object]) -> None:
        self.errors: list[BaseException] = []

        def run() -> None:
            try:
                work()
            except BaseException as exc:  # reported by the test
                self.errors.append(exc)
            finally:
                connection.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def overlap(self) -> None:
        self.thread.join(OVERLAP_SECONDS)

    def finish(self) -> list[BaseException]:
        self.thread.join(30)
        assert not self.thread.is_alive(), "the thread is still blocked"
        return self.errors


def _user() -> User:
    return User.objects.create_user(email=f"{uuid.uuid4().hex[:8]}@example.com", password="x" * 12)


def _nothing_left_of(user: User) -> None:
    assert not User.objects.filter(pk=user.pk).exists()
    assert not AllergyProfile.objects.filter(user_id=user.pk).exists()
    assert not InteractionMirror.objects.filter(user_id=user.pk).exists()
    assert AgentCopy.objects.get(uid=user.uid).erased_at is not None  # the tombstone was written


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("write", CONSUMER_WRITES.values(), ids=CONSUMER_WRITES.keys())
def test_a_consumer_write_during_the_deletion_waits_for_it_and_finds_no_user(write, monkeypatch) -> None:
    """The write comes after the cascade and before the DELETE of the user's row: it must wait for
    the deletion and then find no user, not add a row the deletion's foreign key check refuses."""
    user = _user()
    consumer: list[InThread] = []
    delete_batch = DeleteQuery.delete_batch

    def delete_batch_with_the_consumer_first(query: DeleteQuery, pk_list, using):
        if query.model is User and not consumer:
            consumer.append(InThread(lambda: write(user.uid)))
            consumer[0].overlap()
        return delete_batch(query, pk_list, using)

    monkeypatch.setattr(DeleteQuery, "delete_batch", delete_batch_with_the_consumer_first)

    services.user_erase(user=user)

    assert consumer, "the deletion never deleted the user's row"
    assert consumer[0].finish() == []
    _nothing_left_of(user)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("write", "model"),
    [
        (CONSUMER_WRITES["profile marked verifying"], AllergyProfile),
        (CONSUMER_WRITES["interaction mirror stored"], InteractionMirror),
    ],
    ids=["profile", "interaction mirror"],
)
def test_a_deletion_during_a_consumer_write_waits_for_it_and_deletes_its_row(write, model) -> None:
    """The deletion starts while the consumer's transaction has inserted its row: the deletion must
    wait for it and delete the row too, not miss it and fail on the foreign key."""
    user = _user()
    deletion: list[InThread] = []

    def delete_the_account_now(sender, instance, created: bool, **kwargs) -> None:
        if created and instance.user_id == user.pk and not deletion:
            deletion.append(InThread(lambda: services.user_erase(user=user)))
            deletion[0].overlap()

    post_save.connect(delete_the_account_now, sender=model, weak=False)
    try:
        write(user.uid)
    finally:
        post_save.disconnect(delete_the_account_now, sender=model)

    assert deletion, "the consumer's write inserted no row"
    assert deletion[0].finish() == []
    _nothing_left_of(user)


def _wait_until_a_backend_waits_for_a_lock(timeout: float = 10.0) -> None:
    """Poll PostgreSQL (on a connection of its own) until some session of this database waits for a lock."""
    import time

    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    deadline = time.monotonic() + timeout
    with psycopg.connect(**params, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()[0]
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("no session ever waited for a lock")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_put_and_the_account_deletion_at_once_answer_a_retry_not_a_500(verified_user, issued_token, password) -> None:
    """The user's own PUT /api/allergies/ holds the profile's row and, at its commit, needs the user's
    row (the history row's foreign key); the deletion holds the user's row and needs the profile's.
    PostgreSQL breaks that deadlock by rolling one back: it must answer 503 `conflict_retry` with
    Retry-After, having changed nothing, and succeed when sent again; never a 500."""
    from rest_framework.test import APIClient

    from allergies import signals as allergy_signals

    allergy_services.allergy_profile_replace(
        user=verified_user, confirmed=["peanuts"], intolerances=[], severity={"peanuts": "severe"}
    )

    def client() -> APIClient:
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {issued_token.raw}")
        return api

    def send(name: str):
        if name == "delete":
            return client().delete("/api/account/", {"password": password}, format="json")
        milk = {"confirmed": ["milk"], "intolerances": [], "severity": {"milk": "severe"}}
        return client().put("/api/allergies/", milk, format="json")

    answers: dict[str, object] = {}
    deletion: list[InThread] = []

    def delete_while_the_put_holds_the_profile(sender, **kwargs) -> None:
        if not deletion:
            deletion.append(InThread(lambda: answers.__setitem__("delete", send("delete"))))
            _wait_until_a_backend_waits_for_a_lock()  # the deletion, for the profile's row

    allergy_signals.allergy_profile_replaced.connect(delete_while_the_put_holds_the_profile, weak=False)
    try:
        answers["put"] = send("put")
    finally:
        allergy_signals.allergy_profile_replaced.disconnect(delete_while_the_put_holds_the_profile)
    assert deletion[0].finish() == []

    statuses = {name: answer.status_code for name, answer in answers.items()}
    [rolled_back] = [name for name, code in statuses.items() if code == 503]
    assert set(statuses.values()) - {503} <= {200, 204}, statuses
    answer = answers[rolled_back]
    assert answer.json()["code"] == "conflict_retry"
    assert answer["Retry-After"] == "1"
    if rolled_back == "delete":
        assert User.objects.filter(pk=verified_user.pk).exists()  # nothing changed
        assert send("delete").status_code == 204
    _nothing_left_of(verified_user)


def test_a_login_that_the_accounts_deletion_overtakes_is_a_failed_login(
    api_client, verified_user, password, monkeypatch
) -> None:
    """The owner deletes the account (from another device) after this login read the user and
    before it issued the token: the login fails as with any unknown account, not with a 500."""
    check_password = User.check_password

    def check_then_lose_the_account(self, raw: str) -> bool:
        checked = check_password(self, raw)
        services.user_erase(user=User.objects.get(pk=self.pk))
        return checked

    monkeypatch.setattr(User, "check_password", check_then_lose_the_account)

    response = api_client.post("/api/login/", {"email": verified_user.email, "password": password}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"
    assert not User.objects.filter(pk=verified_user.pk).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_first_preferences_write_that_the_deletion_overtakes_answers_a_retry(verified_user, issued_token) -> None:
    """The owner's first PATCH /api/preferences/ creates the row while the same account is being
    deleted: at its commit the user is gone and the foreign key refuses the row. That answers 503
    `conflict_retry`, having changed nothing; sent again, the request is refused as logged out."""
    from rest_framework.test import APIClient

    from identity.models import UserPreferences

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {issued_token.raw}")
    deletion: list[InThread] = []

    def delete_the_account_now(sender, instance, created: bool, **kwargs) -> None:
        if created and not deletion:
            deletion.append(InThread(lambda: services.user_erase(user=User.objects.get(pk=verified_user.pk))))
            deletion[0].overlap()

    post_save.connect(delete_the_account_now, sender=UserPreferences, weak=False)
    try:
        answer = api.patch("/api/preferences/", {"preferences": {"vibes": ["quiet"]}}, format="json")
    finally:
        post_save.disconnect(delete_the_account_now, sender=UserPreferences)

    assert deletion, "the write created no preferences row"
    assert deletion[0].finish() == []
    assert (answer.status_code, answer.json()["code"], answer["Retry-After"]) == (503, "conflict_retry", "1")
    assert not UserPreferences.objects.filter(user_id=verified_user.pk).exists()
    again = api.patch("/api/preferences/", {"preferences": {"vibes": ["quiet"]}}, format="json")
    assert again.status_code == 401
    _nothing_left_of(verified_user)
