"""Verification of the Agent's copy: the comparison (pure), the read-back schedule, and the
read-back chain against a real Agent double over HTTP."""

import time
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from agent_bridge import events, verification
from agent_bridge.agent_client import AgentClient, AgentOutcomeUnknown
from agent_bridge.models import AgentCopy, AgentDriftCount, OutboxEvent
from agent_bridge.verification import CheckResult, DriftKind, Expected, compare
from allergies import selectors as allergy_selectors
from allergies import services as allergy_services
from consumers.handlers import HANDLERS
from identity import selectors as identity_selectors
from identity import services as identity_services

UID = uuid.UUID("0b7c1a8e-3e7e-4a43-a2cb-5b8f2f6c9d10")
OURS = {
    "confirmed": ["peanuts"],
    "intolerances": ["lactose"],
    "severity": {"peanuts": "anaphylactic", "lactose": "intolerance"},
}
EXPECTED = Expected(uid=UID, exists=True, allergies=OURS, preferences={"vibes": ["cozy"], "price_comfort": "mid"})


def held(**changes):
    user = {
        "uid": str(UID),
        "allergies": dict(OURS),
        "allergy_flags": ["lactose", "peanuts"],
        "preferences": {"vibes": ["cozy"], "price_comfort": "mid"},
    }
    user.update(changes)
    return user


# --- comparison --------------------------------------------------------------------------


def test_an_equal_copy_has_no_drift() -> None:
    assert compare(EXPECTED, held()) == ()


@pytest.mark.parametrize(
    "allergies",
    [
        {"confirmed": [], "intolerances": [], "severity": {}},  # lost
        {**OURS, "confirmed": ["peanuts", "sesame"]},  # one more
        {**OURS, "severity": {"peanuts": "moderate"}},  # a weaker severity
        {**OURS, "intolerances": []},
        {},  # no allergies object at all
    ],
)
def test_any_difference_in_allergies_is_drift(allergies) -> None:
    assert compare(EXPECTED, held(allergies=allergies)) == (DriftKind.ALLERGIES,)


def test_allergy_flags_are_compared_too() -> None:
    assert compare(EXPECTED, held(allergy_flags=["peanuts"])) == (DriftKind.ALLERGIES,)


def test_preferences_are_compared_as_merged() -> None:
    # What the Agent learned on its own, and list items it holds beyond ours, are not drift:
    # merging ours into its copy would change nothing.
    learned = {"vibes": ["cozy", "loud"], "price_comfort": "mid", "learned": {"spicy": 0.8}}
    assert compare(EXPECTED, held(preferences=learned)) == ()
    # A value of ours missing or different at the Agent is.
    for preferences in ({"vibes": ["cozy"]}, {"vibes": ["loud"], "price_comfort": "mid"}, {}, None):
        assert compare(EXPECTED, held(preferences=preferences)) == (DriftKind.PREFERENCES,)


def test_a_removed_value_back_at_the_agent_is_drift_in_a_reset_key() -> None:
    # The user removed "thai": a merge of ours into a copy that got it back changes nothing, so
    # only an exact comparison of the reset key sees it (found by the chaos suite, seed 721222).
    ours = Expected(uid=UID, exists=True, allergies=OURS, preferences={"cuisine_affinity": {"italian": 0.5}})
    back = held(preferences={"cuisine_affinity": {"italian": 0.5, "thai": 0.9}})
    assert compare(ours, back) == ()
    exact = Expected(**{**ours.__dict__, "exact_preference_keys": ("cuisine_affinity",)})
    assert compare(exact, back) == (DriftKind.PREFERENCES,)
    assert compare(exact, held(preferences={"cuisine_affinity": {"italian": 0.5}, "learned": 1})) == ()


def test_existence_both_ways() -> None:
    assert compare(EXPECTED, None) == (DriftKind.MISSING,)
    gone = Expected(uid=UID, exists=False)
    assert compare(gone, held()) == (DriftKind.LEFTOVER,)
    assert compare(gone, None) == ()


def test_several_kinds_at_once() -> None:
    drifted = held(allergies={}, allergy_flags=[], preferences={})
    assert compare(EXPECTED, drifted) == (DriftKind.ALLERGIES, DriftKind.PREFERENCES)


# --- the read-back schedule --------------------------------------------------------------


def test_the_default_schedule_grows_to_a_horizon_of_a_few_minutes() -> None:
    delays = verification.read_back_delays()
    assert list(delays) == sorted(delays) and len(delays) >= 3
    assert 60 <= verification.read_back_horizon_seconds() <= 600


def test_the_schedule_comes_from_the_setting_and_past_the_horizon_repeats_the_shortest(settings) -> None:
    settings.AGENT_READ_BACK_DELAYS_SECONDS = [1, 3, 9]
    assert verification.read_back_delays() == (1.0, 3.0, 9.0)
    assert verification.read_back_horizon_seconds() == 13.0
    assert [verification._next_delay(step) for step in range(5)] == [1.0, 3.0, 9.0, 1.0, 1.0]


# --- the read-back chain, against the double ---------------------------------------------


def steps(uid) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(type=events.AGENT_READ_BACK_DUE, uid=uid).order_by("id"))


def run_step(row: OutboxEvent, agent_client) -> str:
    OutboxEvent.objects.filter(pk=row.pk).update(status=OutboxEvent.Status.DELIVERED)
    return HANDLERS[events.AGENT_READ_BACK_DUE](row.envelope, agent_client)


def settle_all() -> None:
    OutboxEvent.objects.exclude(type=events.AGENT_READ_BACK_DUE).update(status=OutboxEvent.Status.DELIVERED)


def synced_user(verified_user, agent_client) -> uuid.UUID:
    """The user with allergies and preferences, at the Agent exactly, their events delivered."""
    uid = verified_user.uid
    allergy_services.allergy_profile_replace(user=verified_user, **OURS)
    identity_services.user_preferences_update(user=verified_user, preferences={"vibes": ["cozy"]})
    for row in OutboxEvent.objects.filter(uid=uid).order_by("id"):
        if row.type in HANDLERS and row.type != events.EMAIL_REQUESTED:
            HANDLERS[row.type](row.envelope, agent_client)
    settle_all()
    return uid


def sync(verified_user) -> dict:
    return allergy_selectors.allergy_profile_get(user=verified_user).sync


@pytest.fixture
def short_schedule(settings):
    settings.AGENT_READ_BACK_DELAYS_SECONDS = [2, 5, 15]


@pytest.mark.django_db
def test_an_equal_copy_resolves_at_the_last_step_and_only_then_shows_synced(
    verified_user, agent, devagent, short_schedule
) -> None:
    uid = synced_user(verified_user, agent)
    assert sync(verified_user)["state"] == "synced"

    before = timezone.now()
    verification.read_back_start(uid=uid)
    assert sync(verified_user)["state"] == "pending", "never synced while unresolved"
    (first,) = steps(uid)
    assert first.available_at >= before + timedelta(seconds=2)
    assert first.data["step"] == 0

    assert run_step(first, agent) == "delivered"
    second = steps(uid)[-1]
    assert second.data == {"chain": first.data["chain"], "step": 1, "repairs": 0}
    assert second.available_at >= timezone.now() + timedelta(seconds=4)
    assert sync(verified_user)["state"] == "pending"
    assert sync(verified_user)["verified_at"] is not None  # equal at this step, still unresolved

    run_step(second, agent)
    run_step(steps(uid)[-1], agent)
    assert len(steps(uid)) == 3, "no step after the last"
    assert sync(verified_user)["state"] == "synced"
    copy = AgentCopy.objects.get(uid=uid)
    assert (copy.read_back_chain, copy.read_back_since) == (None, None)
    assert len([r for r in devagent.state.request_log() if r["method"] == "GET"]) == 3


@pytest.mark.django_db
def test_a_late_apply_found_by_a_step_is_counted_and_repaired_through_the_bus(
    verified_user, agent, devagent, short_schedule
) -> None:
    uid = synced_user(verified_user, agent)
    verification.read_back_start(uid=uid)
    devagent.state.tamper(str(uid), {"allergies": None})  # as if an older write landed late

    first = steps(uid)[0]
    run_step(first, agent)

    assert AgentDriftCount.objects.get(kind=DriftKind.ALLERGIES).count == 1
    (resync,) = OutboxEvent.objects.filter(type=events.AGENT_RESYNC_REQUESTED, uid=uid)
    assert sync(verified_user)["state"] == "pending" and sync(verified_user)["synced_revision"] == 0
    newer = steps(uid)[-1]
    assert newer.data["chain"] != first.data["chain"] and newer.data["step"] == 0, "a new chain checks the repair"
    assert run_step(first, agent) == "skipped", "the old chain is superseded"
    assert devagent.state.snapshot()["users"][str(uid)]["allergies"]["confirmed"] == [], "nothing sent around the bus"

    HANDLERS[resync.type](resync.envelope, agent)
    settle_all()
    assert devagent.state.snapshot()["users"][str(uid)]["allergies"] == OURS


@pytest.mark.django_db
def test_a_step_gives_no_verdict_while_a_change_is_in_flight(verified_user, agent, devagent, short_schedule) -> None:
    uid = synced_user(verified_user, agent)
    verification.read_back_start(uid=uid)
    allergy_services.allergy_profile_replace(user=verified_user, confirmed=[], intolerances=[], severity={})

    run_step(steps(uid)[0], agent)
    assert not AgentDriftCount.objects.exists(), "an undelivered change is not drift"
    assert OutboxEvent.objects.filter(type=events.AGENT_RESYNC_REQUESTED).count() == 0
    assert steps(uid)[-1].data["step"] == 1


@pytest.mark.django_db
def test_a_chain_does_not_end_while_the_last_step_saw_a_change_in_flight(
    verified_user, agent, devagent, settings
) -> None:
    settings.AGENT_READ_BACK_DELAYS_SECONDS = [2]
    uid = synced_user(verified_user, agent)
    verification.read_back_start(uid=uid)
    allergy_services.allergy_profile_replace(user=verified_user, confirmed=[], intolerances=[], severity={})
    run_step(steps(uid)[0], agent)
    assert steps(uid)[-1].data["step"] == 1 and sync(verified_user)["state"] == "pending"


@pytest.mark.django_db
def test_a_write_of_unknown_outcome_starts_a_read_back_and_is_retried(verified_user, devagent, settings) -> None:
    settings.AGENT_READ_BACK_DELAYS_SECONDS = [2, 5]
    uid = verified_user.uid
    devagent.state.create_user(str(uid), {})
    allergy_services.allergy_profile_replace(user=verified_user, **OURS)
    env = OutboxEvent.objects.get(type=events.ALLERGIES_REPLACED).envelope
    devagent.state.set_misbehaviour({"late_apply": {"hold_ms": 600, "count": 1, "paths": "/allergies$"}})
    fast = AgentClient(base_url=devagent.base_url, service_token=settings.AGENT_SERVICE_TOKEN, timeout=0.2)
    with fast, pytest.raises(AgentOutcomeUnknown):
        HANDLERS[events.ALLERGIES_REPLACED](env, fast)
    assert len(steps(uid)) == 1
    assert AgentCopy.objects.get(uid=uid).read_back_chain is not None
    assert sync(verified_user)["state"] != "synced"


@pytest.mark.django_db
def test_deletion_leaves_a_uid_only_tombstone_and_a_leftover_is_erased_through_the_bus(
    verified_user, agent, devagent
) -> None:
    uid = synced_user(verified_user, agent)
    identity_services.user_erase(user=verified_user)
    copy = AgentCopy.objects.get(uid=uid)
    assert copy.erased_at is not None
    assert {f.name for f in AgentCopy._meta.get_fields()} == {
        "uid", "checked_at", "read_back_chain", "read_back_since", "erased_at"
    }, "a tombstone holds no personal data"
    settle_all()  # the user.deleted event "was lost": the Agent still has the user

    result = verification.check(uid=uid, agent=agent)
    assert result == CheckResult(uid, drifts=(DriftKind.LEFTOVER,))
    verification.check_record(result, source=verification.CheckSource.RECONCILE, repair=True)
    erase = OutboxEvent.objects.filter(type=events.USER_DELETED, uid=uid, status=OutboxEvent.Status.PENDING).get()
    HANDLERS[erase.type](erase.envelope, agent)
    assert str(uid) not in devagent.state.snapshot()["users"]


@pytest.mark.django_db
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_read_back_started_while_the_account_is_deleted_does_not_deadlock_with_it(verified_user) -> None:
    """Found by the chaos suite: the deletion locks the profile (cascade), then the copy (tombstone);
    read_back_start locked the copy, then the profile, and PostgreSQL killed the deletion (500)."""
    import threading

    from django.db import connection, connections, transaction

    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    uid = verified_user.uid
    allergy_services.allergy_profile_replace(user=verified_user, confirmed=[], intolerances=[], severity={})
    AgentCopy.objects.get_or_create(uid=uid)
    cascaded, errors = threading.Event(), []

    def deletion() -> None:
        try:
            with transaction.atomic():  # user_erase, paused between its cascade and its tombstone
                verified_user.delete()
                cascaded.set()
                time.sleep(0.5)  # the read-back takes what it can meanwhile
                verification.tombstone_add(uid=uid)
        except Exception as exc:
            errors.append(exc)
        finally:
            cascaded.set()
            connections.close_all()

    def read_back() -> None:
        cascaded.wait(5)
        try:
            verification.read_back_start(uid=uid)
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deletion), threading.Thread(target=read_back)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert AgentCopy.objects.get(uid=uid).erased_at is not None


def test_deleting_a_user_mid_read_back_ends_the_read_back(verified_user) -> None:
    """Found by the chaos suite: the erasure empties the chain's pending event, whose step then
    matches no chain and is skipped, so the chain stayed open for good (and `verifying` never
    went back to 0)."""
    uid = verified_user.uid
    verification.read_back_start(uid=uid)
    identity_services.user_erase(user=verified_user)

    step = OutboxEvent.objects.get(type=events.AGENT_READ_BACK_DUE, uid=uid)
    assert step.data == {}  # emptied by the bus erasure
    assert HANDLERS[step.type](step.envelope, None) is not None
    assert AgentCopy.objects.get(uid=uid).read_back_chain is None
    assert verification.verification_status_get()["verifying"] == 0


@pytest.mark.django_db
def test_a_delivered_erasure_is_read_back_so_an_older_create_landing_late_is_erased_again(
    verified_user, agent, devagent, short_schedule
) -> None:
    """Found by the chaos run on the embedded bus: a create whose answer timed out (its read-back
    ended by the erasure) or whose consumer died waiting landed at the Agent after the DELETE, and
    nothing looked again: the deleted user stayed at the Agent."""
    uid = synced_user(verified_user, agent)
    identity_services.user_erase(user=verified_user)
    erase = OutboxEvent.objects.get(type=events.USER_DELETED, uid=uid)
    HANDLERS[erase.type](erase.envelope, agent)
    OutboxEvent.objects.filter(pk=erase.pk).update(status=OutboxEvent.Status.DELIVERED)
    assert str(uid) not in devagent.state.snapshot()["users"]
    devagent.state.create_user(str(uid), {})  # the older create, held by the Agent, lands now

    run_step(steps(uid)[-1], agent)
    assert AgentDriftCount.objects.get(kind=DriftKind.LEFTOVER).count == 1
    again = OutboxEvent.objects.get(type=events.USER_DELETED, uid=uid, status=OutboxEvent.Status.PENDING)
    HANDLERS[again.type](again.envelope, agent)
    assert str(uid) not in devagent.state.snapshot()["users"]


@pytest.mark.django_db
def test_the_erasure_read_back_resolves_and_a_repair_does_not_restart_its_count(
    verified_user, agent, devagent, short_schedule
) -> None:
    uid = synced_user(verified_user, agent)
    identity_services.user_erase(user=verified_user)
    erase = OutboxEvent.objects.get(type=events.USER_DELETED, uid=uid)
    HANDLERS[erase.type](erase.envelope, agent)
    settle_all()
    for _ in range(3):
        run_step(steps(uid)[-1], agent)
    assert AgentCopy.objects.get(uid=uid).read_back_chain is None, "three equal steps end the chain"
    assert verification.verification_status_get()["verifying"] == 0

    # A repair's chain (repairs=1) is running when its user.deleted is delivered: the delivery
    # leaves it (and its count, which bounds the repairs) alone.
    verification.read_back_start(uid=uid, repairs=1)
    chain = AgentCopy.objects.get(uid=uid).read_back_chain
    HANDLERS[erase.type](erase.envelope, agent)
    assert AgentCopy.objects.get(uid=uid).read_back_chain == chain
    assert steps(uid)[-1].data["repairs"] == 1


def test_settings_document_the_horizon() -> None:
    assert "AGENT_READ_BACK_DELAYS_SECONDS" in (settings.BASE_DIR / ".env.example").read_text()


@pytest.mark.django_db
def test_a_copy_that_keeps_differing_is_repaired_a_bounded_number_of_times(
    verified_user, agent, devagent, short_schedule, caplog
) -> None:
    uid = synced_user(verified_user, agent)
    verification.read_back_start(uid=uid)
    for _ in range(verification.MAX_REPAIRS + 1):
        devagent.state.tamper(str(uid), {"allergies": None})  # the Agent keeps losing them
        run_step(steps(uid)[-1], agent)
        for resync in OutboxEvent.objects.filter(type=events.AGENT_RESYNC_REQUESTED, status="pending"):
            HANDLERS[resync.type](resync.envelope, agent)
        settle_all()
    assert [row.data["repairs"] for row in steps(uid)] == list(range(verification.MAX_REPAIRS + 1))
    assert OutboxEvent.objects.filter(type=events.AGENT_RESYNC_REQUESTED).count() == verification.MAX_REPAIRS
    assert AgentDriftCount.objects.get(kind=DriftKind.ALLERGIES).count == verification.MAX_REPAIRS + 1
    assert AgentCopy.objects.get(uid=uid).read_back_chain is None, "no endless chain"
    assert "still differs" in caplog.text


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


@pytest.mark.django_db
def test_an_older_preference_write_landing_late_cannot_re_add_a_removed_value_unseen(
    verified_user, agent, devagent, short_schedule, settings
) -> None:
    """Found by the chaos suite (seed 721222): a write of unknown outcome carrying "thai" landed
    after the write that removed it; the delivery had already forgotten the reset keys, so every
    step of the read-back compared as merged, saw nothing, and the Agent kept "thai" for good."""
    uid = synced_user(verified_user, agent)
    uid_s = str(uid)

    def pending(event_type: str) -> OutboxEvent:
        return OutboxEvent.objects.filter(type=event_type, uid=uid, status=OutboxEvent.Status.PENDING).latest("id")

    def deliver(row: OutboxEvent, client) -> None:
        OutboxEvent.objects.filter(pk=row.pk).update(status=OutboxEvent.Status.DELIVERED)
        HANDLERS[row.type](row.envelope, client)

    identity_services.user_preferences_update(user=verified_user, preferences={"cuisine_affinity": {"thai": 0.9}})
    with_thai = pending(events.PREFERENCES_UPDATED)
    devagent.state.set_misbehaviour({"late_apply": {"hold_ms": 800, "count": 1, "paths": "^/users/"}})
    fast = AgentClient(base_url=devagent.base_url, service_token=settings.AGENT_SERVICE_TOKEN, timeout=0.2)
    with fast, pytest.raises(AgentOutcomeUnknown):
        deliver(with_thai, fast)  # held by the Agent: it lands later
    assert AgentCopy.objects.get(uid=uid).read_back_chain is not None

    identity_services.user_preferences_update(user=verified_user, preferences={"cuisine_affinity": {"italian": 0.5}})
    deliver(pending(events.PREFERENCES_UPDATED), agent)  # the newer write: "thai" reset, then ours
    assert identity_selectors.user_preferences_get_by_uid(uid=uid).reset_keys == ["cuisine_affinity"], (
        "kept while the read-back runs"
    )
    _wait_for(lambda: "thai" in devagent.state.snapshot()["users"][uid_s]["preferences"]["cuisine_affinity"])

    run_step(steps(uid)[0], agent)
    assert AgentDriftCount.objects.get(kind=DriftKind.PREFERENCES).count == 1
    deliver(pending(events.AGENT_RESYNC_REQUESTED), agent)
    assert devagent.state.snapshot()["users"][uid_s]["preferences"]["cuisine_affinity"] == {"italian": 0.5}

    for _ in verification.read_back_delays():  # the repair's chain runs to its end and resolves
        run_step(steps(uid)[-1], agent)
    assert AgentCopy.objects.get(uid=uid).read_back_chain is None
    assert sync(verified_user)["state"] == "synced"
    assert identity_selectors.user_preferences_get_by_uid(uid=uid).reset_keys == [], "done with the read-back"


@pytest.mark.django_db
def test_without_a_read_back_a_delivery_forgets_the_reset_keys(verified_user, agent, devagent) -> None:
    uid = synced_user(verified_user, agent)
    identity_services.user_preferences_update(user=verified_user, preferences={"vibes": None})
    row = OutboxEvent.objects.filter(type=events.PREFERENCES_UPDATED, uid=uid).latest("id")
    assert identity_selectors.user_preferences_get_by_uid(uid=uid).reset_keys == ["vibes"]
    HANDLERS[row.type](row.envelope, agent)
    assert identity_selectors.user_preferences_get_by_uid(uid=uid).reset_keys == []
