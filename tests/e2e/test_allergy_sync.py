"""Allergies, preferences, history and deletion over real processes: API → bus → consumer → Agent."""
import threading
import time

import pytest
import requests

from tests.e2e.bus_helpers import wait_settled
from tests.e2e.harness import SERVICE_TOKEN, wait_for
from tests.e2e.helpers import create_verified_user, put_allergies

pytestmark = pytest.mark.e2e

PROFILE = {
    "confirmed": ["Peanut", "prawns"],
    "intolerances": ["Lactose"],
    "severity": {"peanuts": "anaphylactic", "shrimp": "severe", "lactose": "intolerance"},
}
AT_AGENT = {
    "confirmed": ["peanuts", "crustaceans"],
    "intolerances": ["lactose"],
    "severity": {"peanuts": "anaphylactic", "crustaceans": "severe", "lactose": "intolerance"},
}


def agent_user(stack, uid: str) -> dict | None:
    return stack.agent.user(uid)


def allergies(stack, user) -> dict:
    response = stack.api("GET", "/api/allergies/", token=user.token)
    assert response.status_code == 200, response.text
    return response.json()


def sync_state(stack, user, state: str, revision: int) -> dict | None:
    sync = allergies(stack, user)["sync"]
    return sync if (sync["state"], sync["revision"]) == (state, revision) else None


def test_put_allergies_reaches_the_agent_exactly_and_shows_synced(stack) -> None:
    user = create_verified_user(stack, email="ada@example.com")

    answer = put_allergies(stack, user, PROFILE)
    assert answer["revision"] == 1 and answer["confirmed"] == ["peanuts", "crustaceans"]

    wait_for(lambda: sync_state(stack, user, "synced", 1), what="the profile to show synced")
    held = agent_user(stack, user.uid)
    assert held["allergies"] == AT_AGENT
    assert held["allergy_flags"] == ["crustaceans", "lactose", "peanuts"]

    cleared = stack.api("DELETE", "/api/allergies/", token=user.token)
    assert cleared.status_code == 200 and cleared.json()["revision"] == 2
    wait_for(lambda: sync_state(stack, user, "synced", 2), what="the cleared profile to show synced")
    assert agent_user(stack, user.uid)["allergies"] == {"confirmed": [], "intolerances": [], "severity": {}}


def test_a_failing_agent_shows_failing_and_never_slows_the_put(stack) -> None:
    user = create_verified_user(stack, email="grace@example.com")
    wait_for(lambda: agent_user(stack, user.uid), what="the user at the Agent")

    stack.agent.fault(status=500, paths="/allergies$")
    started = time.monotonic()
    put_allergies(stack, user, PROFILE)
    assert time.monotonic() - started < 2
    failing = wait_for(lambda: sync_state(stack, user, "failing", 1), what="the profile to show failing")
    assert failing["code"] == "agent_unreachable"  # the Agent answered 500; the detail stays for operators
    assert failing["synced_revision"] == 0

    # A slow Agent (slower than the client's timeout) does not slow the API either.
    stack.agent.fault(latency_ms=5000, paths="/allergies$")
    started = time.monotonic()
    put_allergies(stack, user, {"confirmed": ["milk"], "intolerances": [], "severity": {"milk": "severe"}})
    assert time.monotonic() - started < 2

    stack.agent.clear_faults()
    wait_for(lambda: sync_state(stack, user, "synced", 2), timeout=90, what="the profile to sync once the Agent heals")
    assert agent_user(stack, user.uid)["allergies"]["confirmed"] == ["milk"]


def test_preferences_reach_the_agent_removals_included(stack) -> None:
    user = create_verified_user(stack, email="lin@example.com")
    wait_for(lambda: agent_user(stack, user.uid), what="the user at the Agent")
    # What the Agent learned from chat must survive our merges.
    learned = requests.patch(
        f"{stack.env['AGENT_BASE_URL']}/users/{user.uid}",
        json={"preferences": {"cuisine_affinity": {"thai": 0.9}}},
        headers={"X-Service-Token": SERVICE_TOKEN},
        timeout=10,
    )
    assert learned.ok, learned.text

    for delta in ({"vibes": ["quiet"]}, {"vibes": ["romantic"], "dietary": ["vegan"]}):
        response = stack.api("PATCH", "/api/preferences/", token=user.token, json={"preferences": delta})
        assert response.status_code == 200, response.text

    # "quiet" was replaced: the Agent's union merge alone would keep it.
    expected = {"cuisine_affinity": {"thai": 0.9}, "vibes": ["romantic"], "dietary": ["vegan"]}
    wait_for(lambda: agent_user(stack, user.uid)["preferences"] == expected, what="the replaced preferences")

    removed = stack.api("PATCH", "/api/preferences/", token=user.token, json={"preferences": {"dietary": None}})
    assert removed.json() == {"preferences": {"vibes": ["romantic"]}}
    expected = {"cuisine_affinity": {"thai": 0.9}, "vibes": ["romantic"], "dietary": []}
    wait_for(lambda: agent_user(stack, user.uid)["preferences"] == expected, what="the removed key emptied")


def test_interaction_history_is_mirrored_and_cleared(stack) -> None:
    user = create_verified_user(stack, email="joan@example.com")
    wait_for(lambda: agent_user(stack, user.uid), what="the user at the Agent")
    for i in range(3):
        item = {"user_query": f"dinner {i}", "created_at": f"2026-01-0{i + 1}T12:00:00Z"}
        stack.agent.add_interaction(user.uid, item)

    first = stack.api("GET", "/api/interactions/", token=user.token).json()
    assert first["refreshing"] is True

    def mirrored() -> dict | None:
        body = stack.api("GET", "/api/interactions/", token=user.token).json()
        return body if body["total"] == 3 and not body["refreshing"] else None

    body = wait_for(mirrored, what="the history mirror")
    assert [i["user_query"] for i in body["interactions"]] == ["dinner 2", "dinner 1", "dinner 0"]

    assert stack.api("DELETE", "/api/interactions/", token=user.token).status_code == 202
    assert stack.api("GET", "/api/interactions/", token=user.token).json()["interactions"] == []
    wait_for(lambda: agent_user(stack, user.uid)["interactions"] == [], what="the Agent to clear the history")


def test_account_deletion_removes_the_user_at_the_agent(stack) -> None:
    user = create_verified_user(stack, email="mae@example.com")
    put_allergies(stack, user, PROFILE)
    wait_for(lambda: sync_state(stack, user, "synced", 1), what="the profile at the Agent")

    response = stack.api("DELETE", "/api/account/", token=user.token, json={"password": user.password})
    assert response.status_code == 204, response.text

    wait_for(lambda: agent_user(stack, user.uid) is None, what="the Agent to forget the user")
    wait_settled(stack)  # nothing left that could re-create the user: no event, no read-back
    assert agent_user(stack, user.uid) is None


def test_two_consumers_never_send_a_stale_profile(stack_factory) -> None:
    """Concurrent PUTs with two consumer processes (on RabbitMQ when AMQP_URL is set): the
    Agent ends with the latest revision and never receives an older one after a newer one."""
    stack = stack_factory(consumers=2)
    user = create_verified_user(stack, email="ida@example.com")
    wait_for(lambda: agent_user(stack, user.uid), what="the user at the Agent")
    stack.agent.fault(latency_ms=30)  # widen the windows in which deliveries could overlap

    revision_of: dict[str, int] = {}
    lock = threading.Lock()

    def put(i: int) -> None:
        name = f"allergen {i}"
        answer = put_allergies(stack, user, {"confirmed": [name], "intolerances": [], "severity": {name: "severe"}})
        with lock:
            revision_of[name] = answer["revision"]

    threads = [threading.Thread(target=put, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(revision_of.values()) == list(range(1, 17))  # the row lock gave distinct revisions

    final = wait_for(lambda: sync_state(stack, user, "synced", 16), timeout=90, what="revision 16 at the Agent")
    assert final["synced_revision"] == 16
    latest = next(name for name, revision in revision_of.items() if revision == 16)
    assert agent_user(stack, user.uid)["allergies"]["confirmed"] == [latest]

    sent = [r["body"]["confirmed"][0] for r in stack.agent.requests()
            if r["method"] == "PATCH" and r["path"].endswith("/allergies") and r["status"] == 200]
    revisions_sent = [revision_of[name] for name in sent]
    assert revisions_sent == sorted(revisions_sent), revisions_sent
