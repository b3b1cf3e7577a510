"""Handlers against a real Agent double over HTTP (agent_bridge.devagent), one event type at a time."""

import random
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from agent_bridge import events
from agent_bridge import services as bridge_services
from agent_bridge.delivery import Cause, Status
from agent_bridge.leases import user_lease
from agent_bridge.models import InteractionMirror, OutboxEvent, UserSyncLease
from allergies import selectors as allergy_selectors
from allergies import services as allergy_services
from allergies.tests.test_selectors import sync_of
from consumers import processing
from consumers.handlers import HANDLERS
from consumers.tests.conftest import envelope
from identity import services as identity_services
from identity.models import UserPreferences

PEANUTS = {
    "confirmed": ["peanuts"],
    "intolerances": ["lactose"],
    "severity": {"peanuts": "anaphylactic", "lactose": "intolerance"},
}


def handle(env, agent) -> str:
    return HANDLERS[env["type"]](env, agent)


def outbox_envelopes(event_type: str) -> list:
    return [e.envelope for e in OutboxEvent.objects.filter(type=event_type).order_by("id")]


def agent_user(devagent, uid) -> dict | None:
    return devagent.state.snapshot()["users"].get(str(uid))


def agent_requests(devagent, method: str | None = None, suffix: str = "") -> list[dict]:
    return [
        r
        for r in devagent.state.request_log()
        if (method is None or r["method"] == method) and r["path"].endswith(suffix)
    ]


def create_at_agent(agent, uid) -> None:
    agent.create_user(uid=str(uid))


def sync_state(verified_user):
    return allergy_selectors.allergy_profile_get(user=verified_user).sync


def test_every_event_type_has_a_handler() -> None:
    assert set(HANDLERS) == set(events.EVENT_TYPES)


# --- user.registered ----------------------------------------------------------------


def test_user_registered_creates_the_user_with_the_full_current_snapshot(verified_user, agent, devagent) -> None:
    allergy_services.allergy_profile_replace(user=verified_user, **PEANUTS)
    identity_services.user_preferences_update(user=verified_user, preferences={"vibes": ["quiet"]})

    assert handle(envelope(events.USER_REGISTERED, verified_user.uid), agent) == "delivered"

    user = agent_user(devagent, verified_user.uid)
    assert user["allergies"] == PEANUTS
    assert user["allergy_flags"] == ["lactose", "peanuts"]
    assert user["preferences"] == {"vibes": ["quiet"]}
    # The snapshot carried revision 1 of both: nothing is left pending.
    assert sync_state(verified_user)["state"] == "synced"
    assert UserPreferences.objects.get(user=verified_user).synced_revision == 1


def test_user_registered_is_idempotent(verified_user, agent, devagent) -> None:
    env = envelope(events.USER_REGISTERED, verified_user.uid)
    handle(env, agent)
    handle(env, agent)
    assert list(devagent.state.snapshot()["users"]) == [str(verified_user.uid)]
    assert [r["status"] for r in agent_requests(devagent, "POST")] == [201, 200]


# --- allergies.replaced ---------------------------------------------------------------


def test_allergies_replaced_sends_the_full_state_and_records_the_sync(verified_user, agent, devagent) -> None:
    create_at_agent(agent, verified_user.uid)
    allergy_services.allergy_profile_replace(user=verified_user, **PEANUTS)
    [env] = outbox_envelopes(events.ALLERGIES_REPLACED)

    assert handle(env, agent) == "delivered"

    assert agent_user(devagent, verified_user.uid)["allergies"] == PEANUTS
    assert sync_state(verified_user) == sync_of("synced", 1, 1)
    # A duplicate delivery makes no call.
    assert handle(env, agent) == "skipped"
    assert len(agent_requests(devagent, "PATCH", "/allergies")) == 1


def test_an_old_event_sends_the_current_state_not_its_payload(verified_user, agent, devagent) -> None:
    create_at_agent(agent, verified_user.uid)
    allergy_services.allergy_profile_replace(user=verified_user, **PEANUTS)
    allergy_services.allergy_profile_replace(
        user=verified_user, confirmed=["milk"], intolerances=[], severity={"milk": "severe"}
    )
    first, second = outbox_envelopes(events.ALLERGIES_REPLACED)

    assert handle(first, agent) == "delivered"
    assert agent_user(devagent, verified_user.uid)["allergies"]["confirmed"] == ["milk"]
    assert handle(second, agent) == "skipped"
    assert sync_state(verified_user)["synced_revision"] == 2


def test_allergies_replaced_creates_a_missing_agent_user_from_the_snapshot(verified_user, agent, devagent) -> None:
    allergy_services.allergy_profile_replace(user=verified_user, **PEANUTS)
    identity_services.user_preferences_update(user=verified_user, preferences={"dietary": ["vegan"]})
    [env] = outbox_envelopes(events.ALLERGIES_REPLACED)

    assert handle(env, agent) == "delivered"

    user = agent_user(devagent, verified_user.uid)
    assert user["allergies"] == PEANUTS and user["preferences"] == {"dietary": ["vegan"]}
    assert sync_state(verified_user)["state"] == "synced"
    assert [r["status"] for r in agent_requests(devagent)] == [404, 201]


def test_allergies_replaced_retries_once_when_the_create_found_the_user(verified_user, agent, devagent) -> None:
    create_at_agent(agent, verified_user.uid)
    allergy_services.allergy_profile_replace(user=verified_user, **PEANUTS)
    [env] = outbox_envelopes(events.ALLERGIES_REPLACED)
    devagent.state.set_fault({"status": 404, "code": "USER_NOT_FOUND", "fail_count": 1, "paths": "/allergies$"})

    assert handle(env, agent) == "delivered"

    assert [(r["method"], r["status"]) for r in agent_requests(devagent)][-3:] == [
        ("PATCH", 404),
        ("POST", 200),
        ("PATCH", 200),
    ]
    assert agent_user(devagent, verified_user.uid)["allergies"] == PEANUTS
    assert sync_state(verified_user)["state"] == "synced"


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_reordered_and_duplicated_deliveries_never_overwrite_a_newer_state(
    verified_user, agent, devagent, seed
) -> None:
    """Changes and deliveries interleave at random; every event is delivered 1-3 times in a
    shuffled order. The Agent must end at revision N and never step back to an older one."""
    rng = random.Random(seed)
    create_at_agent(agent, verified_user.uid)
    n = 12

    def profile(revision: int) -> dict:
        name = f"allergen {revision}"
        return {"confirmed": [name], "intolerances": [], "severity": {name: "severe"}}

    undelivered: list = []
    revision = 0
    while revision < n or undelivered:
        if revision < n and (not undelivered or rng.random() < 0.5):
            revision += 1
            allergy_services.allergy_profile_replace(user=verified_user, **profile(revision))
            env = outbox_envelopes(events.ALLERGIES_REPLACED)[-1]
            undelivered.extend([env] * rng.randint(1, 3))
            rng.shuffle(undelivered)
        else:
            handle(undelivered.pop(), agent)

    assert agent_user(devagent, verified_user.uid)["allergies"] == profile(n)
    sent = [r["body"]["confirmed"][0] for r in agent_requests(devagent, "PATCH", "/allergies")]
    revisions_sent = [int(name.split()[-1]) for name in sent]
    assert revisions_sent == sorted(revisions_sent), revisions_sent
    assert len(revisions_sent) == len(set(revisions_sent))  # no revision sent twice
    assert sync_state(verified_user) == sync_of("synced", n, n)


def test_a_failed_attempt_shows_failing_then_synced(verified_user, agent, devagent) -> None:
    create_at_agent(agent, verified_user.uid)
    allergy_services.allergy_profile_replace(user=verified_user, **PEANUTS)
    [env] = outbox_envelopes(events.ALLERGIES_REPLACED)
    devagent.state.set_fault({"status": 500})

    outcome = processing.process_envelope(env, attempt=1, agent=agent)

    assert outcome.status == Status.RETRY
    state = sync_state(verified_user)
    assert state["state"] == "failing" and state["code"] == "agent_unreachable"
    assert "500" in allergy_selectors.allergy_profile_get(user=verified_user).sync_last_error
    assert agent_user(devagent, verified_user.uid)["allergies"]["confirmed"] == []

    devagent.state.set_fault({})
    assert processing.process_envelope(env, attempt=2, agent=agent).status == Status.DELIVERED
    assert sync_state(verified_user) == sync_of("synced", 1, 1)


def test_a_permanent_failure_is_a_dead_letter_and_shows_failing(verified_user, agent, devagent) -> None:
    create_at_agent(agent, verified_user.uid)
    allergy_services.allergy_profile_replace(user=verified_user, **PEANUTS)
    [env] = outbox_envelopes(events.ALLERGIES_REPLACED)
    devagent.state.set_fault({"status": 422})

    assert processing.process_envelope(env, attempt=1, agent=agent).status == Status.DEAD
    assert sync_state(verified_user)["state"] == "failing"
    assert sync_state(verified_user)["code"] == "agent_rejected"
    assert "INVALID_PAYLOAD" in allergy_selectors.allergy_profile_get(user=verified_user).sync_last_error


def test_a_busy_lease_is_not_shown_as_a_failure(verified_user, agent, devagent, settings) -> None:
    create_at_agent(agent, verified_user.uid)
    allergy_services.allergy_profile_replace(user=verified_user, **PEANUTS)
    [env] = outbox_envelopes(events.ALLERGIES_REPLACED)

    # Another consumer is syncing this user (and renewing its lease)...
    UserSyncLease.objects.create(uid=verified_user.uid, owner="other", expires_at=timezone.now() + timedelta(hours=1))
    settings.BUS_OWNERSHIP_SECONDS = 1.5  # ...and this one waits for it one (short) ownership window
    outcome = processing.process_envelope(env, attempt=1, agent=agent)

    assert (outcome.status, outcome.cause) == (Status.RETRY, Cause.OWNER_BUSY)
    assert sync_state(verified_user)["state"] == "pending"


# --- preferences.updated --------------------------------------------------------------


def test_preferences_reach_the_agent_as_a_merge(verified_user, agent, devagent) -> None:
    create_at_agent(agent, verified_user.uid)
    devagent.state.update_preferences(str(verified_user.uid), {"preferences": {"learned": {"spicy": 0.8}}})
    identity_services.user_preferences_update(user=verified_user, preferences={"vibes": ["quiet"]})
    identity_services.user_preferences_update(
        user=verified_user, preferences={"vibes": ["romantic"], "dietary": ["vegan"]}
    )
    envs = outbox_envelopes(events.PREFERENCES_UPDATED)

    for env in reversed(envs):
        assert handle(env, agent) == "delivered"

    assert agent_user(devagent, verified_user.uid)["preferences"] == {
        "learned": {"spicy": 0.8},  # the Agent's own learning is kept: a merge, not a replace
        "vibes": ["romantic"],  # "quiet" was deselected: reset first, so the Agent's union cannot keep it
        "dietary": ["vegan"],
    }
    assert UserPreferences.objects.get(user=verified_user).synced_revision == 2


def test_removed_values_and_keys_end_removed_at_the_agent(verified_user, agent, devagent) -> None:
    """The double unions lists and merges objects like the Agent: removals need the reset merge."""
    create_at_agent(agent, verified_user.uid)
    identity_services.user_preferences_replace(
        user=verified_user,
        preferences={"dietary": ["vegetarian", "halal"], "location_bias": {"city": "Oslo", "radius_km": 3},
                     "vibes": ["quiet"]},
    )
    for env in outbox_envelopes(events.PREFERENCES_UPDATED):
        handle(env, agent)
    identity_services.user_preferences_update(
        user=verified_user, preferences={"dietary": ["halal"], "location_bias": {"city": "Oslo"}, "vibes": None}
    )
    [*_, env] = outbox_envelopes(events.PREFERENCES_UPDATED)

    assert handle(env, agent) == "delivered"

    assert agent_user(devagent, verified_user.uid)["preferences"] == {
        "dietary": ["halal"], "location_bias": {"city": "Oslo"}, "vibes": []
    }
    prefs = UserPreferences.objects.get(user=verified_user)
    assert (prefs.synced_revision, prefs.reset_keys) == (2, [])


def test_a_failure_between_the_reset_and_the_state_is_repaired_by_the_retry(verified_user, agent, devagent) -> None:
    from agent_bridge.agent_client import AgentError

    create_at_agent(agent, verified_user.uid)
    identity_services.user_preferences_update(user=verified_user, preferences={"dietary": ["vegetarian", "halal"]})
    handle(outbox_envelopes(events.PREFERENCES_UPDATED)[0], agent)
    identity_services.user_preferences_update(user=verified_user, preferences={"dietary": ["halal"]})
    env = outbox_envelopes(events.PREFERENCES_UPDATED)[-1]
    patches = []
    real = agent.update_preferences

    def fail_second(*, uid, preferences):
        patches.append(preferences)
        if len(patches) == 2:
            raise AgentError("the Agent went away")
        return real(uid=uid, preferences=preferences)

    agent.update_preferences = fail_second
    with pytest.raises(AgentError):
        handle(env, agent)
    assert UserPreferences.objects.get(user=verified_user).reset_keys == ["dietary"]  # not done yet
    agent.update_preferences = real

    assert handle(env, agent) == "delivered"
    assert agent_user(devagent, verified_user.uid)["preferences"] == {"dietary": ["halal"]}


def test_preferences_create_a_missing_agent_user(verified_user, agent, devagent) -> None:
    identity_services.user_preferences_update(user=verified_user, preferences={"vibes": ["quiet"]})
    [env] = outbox_envelopes(events.PREFERENCES_UPDATED)

    assert handle(env, agent) == "delivered"

    assert agent_user(devagent, verified_user.uid)["preferences"] == {"vibes": ["quiet"]}
    assert UserPreferences.objects.get(user=verified_user).synced_revision == 1


# --- interactions -------------------------------------------------------------------


def seed_interactions(devagent, uid, count: int) -> None:
    for i in range(count):
        devagent.state.add_interaction(
            str(uid), {"user_query": f"q{i}", "created_at": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z"}
        )


def test_clear_requested_clears_the_agent_history(verified_user, auth_client, agent, devagent) -> None:
    create_at_agent(agent, verified_user.uid)
    seed_interactions(devagent, verified_user.uid, 3)
    auth_client.delete("/api/interactions/")
    [env] = outbox_envelopes(events.INTERACTIONS_CLEAR_REQUESTED)

    assert handle(env, agent) == "delivered"

    assert agent_user(devagent, verified_user.uid)["interactions"] == []
    assert InteractionMirror.objects.get(user=verified_user).clear_pending is False


def test_clear_requested_for_a_user_unknown_to_the_agent_is_done(verified_user, agent, devagent) -> None:
    assert handle(envelope(events.INTERACTIONS_CLEAR_REQUESTED, verified_user.uid), agent) == "delivered"
    assert agent_user(devagent, verified_user.uid) is not None  # the Agent's copy of the profile was repaired


def test_refresh_requested_mirrors_every_page_newest_first(verified_user, auth_client, agent, devagent) -> None:
    create_at_agent(agent, verified_user.uid)
    seed_interactions(devagent, verified_user.uid, 230)
    assert auth_client.get("/api/interactions/").json()["refreshing"] is True
    [env] = outbox_envelopes(events.INTERACTIONS_REFRESH_REQUESTED)

    assert handle(env, agent) == "delivered"

    body = auth_client.get("/api/interactions/", {"limit": 100, "offset": 200}).json()
    assert body["total"] == 230 and body["refreshing"] is False and body["synced_at"]
    assert [i["user_query"] for i in body["interactions"]] == [f"q{i}" for i in range(29, -1, -1)]
    assert len(agent_requests(devagent, "GET", "/interactions")) == 3


def test_refresh_stops_at_the_mirror_cap(verified_user, agent, devagent, monkeypatch) -> None:
    monkeypatch.setattr(bridge_services, "INTERACTIONS_MIRROR_MAX_ITEMS", 150)
    create_at_agent(agent, verified_user.uid)
    seed_interactions(devagent, verified_user.uid, 230)

    handle(envelope(events.INTERACTIONS_REFRESH_REQUESTED, verified_user.uid), agent)

    mirror = InteractionMirror.objects.get(user=verified_user)
    assert len(mirror.items) == 150 and mirror.agent_total == 230
    assert [r["query"] for r in agent_requests(devagent, "GET", "/interactions")] == [
        "limit=100&offset=0&include_response=true",
        "limit=50&offset=100&include_response=true",
    ]


def test_refresh_for_a_user_unknown_to_the_agent_mirrors_an_empty_history(verified_user, agent, devagent) -> None:
    assert handle(envelope(events.INTERACTIONS_REFRESH_REQUESTED, verified_user.uid), agent) == "delivered"
    mirror = InteractionMirror.objects.get(user=verified_user)
    assert mirror.items == [] and mirror.synced_at is not None


# --- user.deleted and the never-resurrect rule ------------------------------------------


def test_user_deleted_erases_the_agent_user_and_the_lease(verified_user, agent, devagent) -> None:
    create_at_agent(agent, verified_user.uid)
    with user_lease(verified_user.uid):
        pass
    env = envelope(events.USER_DELETED, verified_user.uid)

    assert handle(env, agent) == "delivered"
    assert agent_user(devagent, verified_user.uid) is None
    assert not UserSyncLease.objects.filter(uid=verified_user.uid).exists()
    assert handle(env, agent) == "delivered"  # a 404 counts as done


@pytest.mark.parametrize(
    "event_type",
    [
        events.USER_REGISTERED,
        events.ALLERGIES_REPLACED,
        events.PREFERENCES_UPDATED,
        events.INTERACTIONS_CLEAR_REQUESTED,
        events.INTERACTIONS_REFRESH_REQUESTED,
    ],
)
def test_events_of_a_deleted_user_never_resurrect_it(verified_user, agent, devagent, event_type: str) -> None:
    allergy_services.allergy_profile_replace(user=verified_user, **PEANUTS)
    identity_services.user_preferences_update(user=verified_user, preferences={"vibes": ["quiet"]})
    uid = verified_user.uid
    verified_user.delete()

    assert handle(envelope(event_type, uid, {"revision": 1}), agent) == "skipped"
    assert devagent.state.request_log() == []


# --- email.requested ------------------------------------------------------------------


def test_email_requested_sends_the_email(verified_user, agent, devagent) -> None:
    assert handle(envelope(events.EMAIL_REQUESTED, verified_user.uid, {"kind": "password_reset"}), agent) == "delivered"
    assert [m.to for m in mail.outbox] == [[verified_user.email]]
    assert devagent.state.request_log() == []


def test_an_email_backend_failure_is_retried_not_fatal(verified_user, agent, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr("identity.emails.send_mail", refuse)
    env = envelope(events.EMAIL_REQUESTED, verified_user.uid, {"kind": "password_reset"})
    outcome = processing.process_envelope(env, attempt=1, agent=agent)
    assert outcome.status == Status.RETRY and "smtp down" in outcome.error


def test_an_unknown_email_kind_is_a_dead_letter(verified_user, agent) -> None:
    env = envelope(events.EMAIL_REQUESTED, verified_user.uid, {"kind": "newsletter"})
    assert processing.process_envelope(env, attempt=1, agent=agent).status == Status.DEAD


def test_email_for_a_deleted_user_is_skipped(verified_user, agent) -> None:
    uid = verified_user.uid
    verified_user.delete()
    assert handle(envelope(events.EMAIL_REQUESTED, uid, {"kind": "verify"}), agent) == "skipped"
    assert mail.outbox == []
