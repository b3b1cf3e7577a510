"""agent_bridge.leases: partition ownership."""
import threading
import time
from unittest import mock

import pytest
from django.db import OperationalError

from agent_bridge.leases import RENEWER, PartitionOwnership
from agent_bridge.models import PartitionLease

pytestmark = pytest.mark.django_db(transaction=True)


def _renewals() -> int:
    return len(RENEWER._holds)


def test_releasing_stops_every_renewal_even_when_the_database_is_gone() -> None:
    """A consumer whose database connections were cut must not keep renewing its partitions:
    its next session (a new owner) would wait for them for good."""
    before = _renewals()
    ownership = PartitionOwnership(owner="old-session")
    assert ownership.try_take("kairos.work.0") and ownership.try_take("kairos.work.1")
    assert _renewals() == before + 2

    with mock.patch.object(PartitionLease.objects, "filter", side_effect=OperationalError("server closed")), \
            pytest.raises(OperationalError):
        ownership.release_all()

    assert _renewals() == before
    assert not ownership.holds("kairos.work.0") and not ownership.holds("kairos.work.1")


def test_release_all_frees_every_partition_for_the_next_owner() -> None:
    ownership = PartitionOwnership(owner="first")
    ownership.try_take("kairos.work.0")
    ownership.try_take("kairos.work.1")
    ownership.release_all()

    assert set(PartitionLease.objects.filter(name__startswith="kairos.work.").values_list("owner", flat=True)) == {""}
    successor = PartitionOwnership(owner="second")
    assert successor.try_take("kairos.work.0") and successor.try_take("kairos.work.1")
    successor.release_all()


# --- the user lease (embedded bus) ---------------------------------------------------------------


def test_a_user_lease_excludes_others_until_freed_or_lapsed() -> None:
    import uuid
    from datetime import timedelta

    from django.utils import timezone

    from agent_bridge.leases import LeaseBusy, user_lease
    from agent_bridge.models import UserSyncLease

    uid, other = uuid.uuid4(), uuid.uuid4()
    with user_lease(uid, wait_seconds=0):
        held = UserSyncLease.objects.get(uid=uid)
        assert held.owner and held.expires_at > timezone.now()
        with pytest.raises(LeaseBusy), user_lease(str(uid), wait_seconds=0):
            pass
        with user_lease(other, wait_seconds=0):  # another user's is independent
            pass
    freed = UserSyncLease.objects.get(uid=uid)
    assert (freed.owner, freed.expires_at) == ("", None)
    UserSyncLease.objects.filter(uid=uid).update(owner="crashed:1", expires_at=timezone.now() - timedelta(seconds=1))
    with user_lease(uid, wait_seconds=0):  # a crashed holder's lapsed lease is taken over
        assert UserSyncLease.objects.get(uid=uid).owner != "crashed:1"
    UserSyncLease.objects.filter(uid=uid).update(owner="alive:1", expires_at=timezone.now() + timedelta(seconds=30))
    with pytest.raises(LeaseBusy), user_lease(uid, wait_seconds=0):
        pass
    assert UserSyncLease.objects.get(uid=uid).owner == "alive:1"  # a busy attempt frees nothing


def test_taking_and_freeing_a_users_lease_is_one_statement_each_and_compiles_no_orm_query(
    orm_compilations_refused,
) -> None:
    import uuid

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from agent_bridge.leases import user_lease
    from agent_bridge.models import UserSyncLease

    uid = uuid.uuid4()
    for _first_time_then_again in range(2):  # no row yet, then its row
        with orm_compilations_refused(), CaptureQueriesContext(connection) as queries, user_lease(uid, wait_seconds=0):
            taken = len(queries.captured_queries)
        assert (taken, len(queries.captured_queries)) == (1, 2)  # the take, then the free
        assert UserSyncLease.objects.get(uid=uid).owner == ""


def _sessions_of_renewer() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_the_renewer_keeps_no_database_session_while_nothing_is_held(settings) -> None:
    """Found by the test database's teardown ("being accessed by other users"): the renewer thread
    kept the connection of its last renewal open for the life of the process."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("counts sessions in pg_stat_activity")
    settings.BUS_OWNERSHIP_SECONDS = 0.9  # renewed every 0.3 s
    renewed = threading.Event()
    before = _sessions_of_renewer()

    def renew() -> None:
        PartitionLease.objects.filter(name="none").update(owner="")  # a statement on the renewer's connection
        renewed.set()

    with RENEWER.hold(renew):
        assert renewed.wait(5)
    deadline = time.monotonic() + 5
    while _sessions_of_renewer() > before:
        assert time.monotonic() < deadline, "the renewer's session stayed open"
        time.sleep(0.05)
