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
