"""An account deletion racing the consumer's writes about the same user.

The consumer adds rows that refer to a user (an empty allergy profile to mark, an interaction
mirror) while the user may be deleting the account. Each test runs the two in two threads, on two
database connections, at the moment that used to fail: the chaos suite's DELETE /api/account/ once
answered 500 when a profile was inserted between the deletion's cascade and its DELETE of the user.
On PostgreSQL only: SQLite's IMMEDIATE transactions run one writer at a time anyway, and the test
database (in memory, shared cache) refuses a second writer at once instead of making it wait.
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

pytestmark = pytest.mark.postgres

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
