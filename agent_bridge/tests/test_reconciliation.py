"""reconcile_agent and resync_agent against a real Agent double over HTTP (in process)."""

import io
import json
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from agent_bridge import events, reconciliation
from agent_bridge.models import AgentCopy, AgentDriftCount, OutboxEvent
from allergies import selectors as allergy_selectors
from allergies import services as allergy_services
from consumers.handlers import HANDLERS
from identity import services as identity_services
from identity.models import User

pytestmark = pytest.mark.django_db

PEANUTS = {
    "confirmed": ["peanuts"],
    "intolerances": ["lactose"],
    "severity": {"peanuts": "anaphylactic", "lactose": "intolerance"},
}


@pytest.fixture(autouse=True)
def agent_settings(settings, devagent):
    settings.AGENT_BASE_URL = devagent.base_url
    settings.AGENT_RECONCILE_READS_PER_SECOND = 1000.0


def deliver_all(agent) -> int:
    """Run the consumer's handlers over every due undelivered event (read-back steps excluded)."""
    count = 0
    while True:
        rows = list(
            OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING, available_at__lte=timezone.now())
            .exclude(type__in=(events.AGENT_READ_BACK_DUE, events.EMAIL_REQUESTED))
            .order_by("id")
        )
        if not rows:
            return count
        for row in rows:
            HANDLERS[row.type](row.envelope, agent)
            OutboxEvent.objects.filter(pk=row.pk).update(status=OutboxEvent.Status.DELIVERED)
            count += 1


def make_user(n: int, agent) -> User:
    user = User.objects.create_user(email=f"u{n}@example.com", username=f"u{n}", password="a-long-passphrase-42")
    identity_services.user_preferences_update(user=user, preferences={"vibes": ["cozy"]})
    allergy_services.allergy_profile_replace(user=user, **PEANUTS)
    OutboxEvent.objects.filter(type=events.USER_REGISTERED, uid=user.uid).delete()  # created by the test
    agent.create_user(uid=str(user.uid))
    return user


def reconcile(*args: str) -> dict:
    out = io.StringIO()
    call_command("reconcile_agent", "--json", *args, stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.fixture
def users(agent):
    made = [make_user(n, agent) for n in range(3)]
    deliver_all(agent)
    return made


def test_an_equal_copy_is_verified_and_stamped(users, agent) -> None:
    summary = reconcile()
    assert (summary["checked"], summary["equal"], summary["drifted"], summary["repaired"]) == (3, 3, 0, 0)
    for user in users:
        sync = allergy_selectors.allergy_profile_get(user=user).sync
        assert sync["state"] == "synced" and sync["verified_at"] is not None
        assert AgentCopy.objects.get(uid=user.uid).checked_at is not None


def test_dry_run_reports_drift_and_changes_nothing(users, agent, devagent) -> None:
    devagent.state.tamper(str(users[0].uid), {"allergies": None})
    devagent.state.tamper(str(users[1].uid), {"preferences": {}})
    before = OutboxEvent.objects.count()

    summary = reconcile("--dry-run")

    assert summary["drifted"] == 2 and summary["equal"] == 1
    assert summary["drifted_by_kind"] == {"missing": 0, "allergies": 1, "preferences": 1, "leftover": 0}
    assert summary["repaired"] == 0 and summary["dry_run"] is True
    assert OutboxEvent.objects.count() == before
    assert not AgentDriftCount.objects.exists() and not AgentCopy.objects.exists()
    assert devagent.state.snapshot()["users"][str(users[0].uid)]["allergies"]["confirmed"] == []


def test_dropped_and_altered_allergies_are_detected_counted_and_repaired_through_the_bus(
    users, agent, devagent
) -> None:
    devagent.state.tamper(str(users[0].uid), {"allergies": None})
    devagent.state.tamper(
        str(users[1].uid), {"allergies": {**PEANUTS, "severity": {"peanuts": "moderate", "lactose": "intolerance"}}}
    )
    summary = reconcile()
    assert summary["drifted_by_kind"]["allergies"] == 2 and summary["repaired"] == 2
    assert AgentDriftCount.objects.get(kind="allergies").count == 2
    for user in users[:2]:
        assert allergy_selectors.allergy_profile_get(user=user).sync["state"] == "pending"
    assert devagent.state.snapshot()["users"][str(users[0].uid)]["allergies"]["confirmed"] == [], "only queued"

    deliver_all(agent)
    for user in users:
        assert devagent.state.snapshot()["users"][str(user.uid)]["allergies"] == PEANUTS
    assert reconcile()["equal"] == 3


def test_a_user_missing_at_the_agent_is_created_and_a_leftover_erased(users, agent, devagent) -> None:
    gone = users[2]
    uid = gone.uid
    identity_services.user_erase(user=gone)
    OutboxEvent.objects.filter(type=events.USER_DELETED).delete()  # the user.deleted event was lost
    devagent.state.delete_user(str(users[0].uid))  # and the Agent lost another user

    summary = reconcile()
    assert summary["drifted_by_kind"] == {"missing": 1, "allergies": 0, "preferences": 0, "leftover": 1}
    deliver_all(agent)
    held = devagent.state.snapshot()["users"]
    assert str(uid) not in held
    assert held[str(users[0].uid)]["allergies"] == PEANUTS
    assert reconcile()["equal"] == 3  # two live users and the tombstone


def test_filters_by_uid_and_by_last_verified_age(users, agent) -> None:
    assert reconcile("--uid", str(users[0].uid))["checked"] == 1
    assert reconcile("--not-verified-for", "1h")["checked"] == 2, "the user just verified is skipped"
    assert reconcile("--not-verified-for", "0s")["checked"] == 3


def test_a_user_with_a_change_in_flight_is_not_drift(users, agent, devagent) -> None:
    allergy_services.allergy_profile_clear(user=users[0])  # queued, not delivered
    summary = reconcile("--uid", str(users[0].uid))
    assert (summary["in_flight"], summary["drifted"]) == (1, 0)


def test_never_checked_first_then_oldest_checked() -> None:
    # Candidates order: users without an AgentCopy row, then oldest checked_at first.
    now = timezone.now()
    a, b = uuid.uuid4(), uuid.uuid4()
    AgentCopy.objects.create(uid=a, checked_at=now)
    AgentCopy.objects.create(uid=b, checked_at=now - timedelta(hours=1))
    fresh = User.objects.create_user(email="n@example.com", username="n", password="a-long-passphrase-42")
    assert reconciliation.oldest_checked(limit=3) == [fresh.uid, b, a]
    assert reconciliation.candidates() == [fresh.uid, b, a]


def test_continuous_rate_covers_the_period_and_respects_the_cap() -> None:
    # 100k users within a day: 1.45 reads/s (with a 25 % margin).
    assert reconciliation.continuous_rate(count=100_000, period_seconds=86400, max_rate=5) == pytest.approx(
        1.4468, 1e-3
    )
    assert reconciliation.continuous_rate(count=10_000_000, period_seconds=86400, max_rate=5) == 5
    assert reconciliation.RateLimiter(4).interval == 0.25


def test_resync_pushes_full_state_to_an_agent_that_forgot_everything(users, agent, devagent) -> None:
    devagent.state.forget()
    out = io.StringIO()
    call_command("resync_agent", "--no-wait", "--json", stdout=out, stderr=io.StringIO())
    assert json.loads(out.getvalue())["users"] == 3
    assert OutboxEvent.objects.filter(type=events.AGENT_RESYNC_REQUESTED, status="pending").count() == 3
    assert {allergy_selectors.allergy_profile_get(user=u).sync["state"] for u in users} == {"pending"}

    deliver_all(agent)
    held = devagent.state.snapshot()["users"]
    for user in users:
        assert held[str(user.uid)]["allergies"] == PEANUTS
        assert held[str(user.uid)]["preferences"] == {"vibes": ["cozy"]}
        assert allergy_selectors.allergy_profile_get(user=user).sync["state"] == "synced"


def test_resync_of_a_user_the_agent_still_has_replaces_its_state(users, agent, devagent) -> None:
    devagent.state.tamper(str(users[0].uid), {"allergies": None, "preferences": {"learned": {"x": 1}}})
    call_command("resync_agent", "--no-wait", "--uid", str(users[0].uid), stdout=io.StringIO(), stderr=io.StringIO())
    deliver_all(agent)
    held = devagent.state.snapshot()["users"][str(users[0].uid)]
    assert held["allergies"] == PEANUTS
    assert held["preferences"] == {"learned": {"x": 1}, "vibes": ["cozy"]}, "merged, as the Agent does"


def test_bad_arguments_are_command_errors() -> None:
    from django.core.management.base import CommandError

    for args in (["--uid", "nope"], ["--not-verified-for", "soon"], ["--rate", "0"], ["--continuous", "--dry-run"]):
        with pytest.raises(CommandError):
            call_command("reconcile_agent", *args, stdout=io.StringIO(), stderr=io.StringIO())


def test_continuous_reconciliation_checks_everyone_and_stops_on_request(users, agent, devagent) -> None:
    import threading

    devagent.state.tamper(str(users[1].uid), {"allergies": None})
    stop = threading.Event()
    seen = []

    def batch(total, rate) -> None:
        seen.append((total.checked, total.drifted_users, rate))
        stop.set()

    total = reconciliation.reconcile_forever(
        agent=agent, period_seconds=1, max_rate=1000, stop=stop, on_batch=batch, refresh_connections=lambda: None
    )
    assert (total.checked, total.equal, total.drifted_users, total.repaired) == (3, 2, 1, 1)
    assert seen[0][2] == pytest.approx(3.75), "1.25 x 3 copies per 1 s period"
    assert all(AgentCopy.objects.get(uid=u.uid).checked_at for u in users)
