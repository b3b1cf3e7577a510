"""Recoverability over real processes (API, consumer, relay with AMQP_URL, Agent double), on
whichever bus the run has: the embedded outbox bus, or RabbitMQ when AMQP_URL is set."""
import os
import signal
import time

import pytest

from tests.e2e.bus_helpers import (
    agent_calls,
    bus,
    current_fault,
    dead_letters,
    replay,
    sentinel,
    uid_of,
    wait_dead_letters,
    wait_drained,
)
from tests.e2e.harness import wait_for
from tests.e2e.helpers import create_verified_user, put_allergies, signup

pytestmark = pytest.mark.e2e

PROFILES = [
    {"confirmed": ["peanuts"], "intolerances": [], "severity": {"peanuts": "severe"}},
    {"confirmed": ["peanuts", "sesame"], "intolerances": [], "severity": {"peanuts": "severe", "sesame": "severe"}},
    {"confirmed": ["sesame"], "intolerances": ["lactose"], "severity": {"sesame": "anaphylactic",
                                                                       "lactose": "intolerance"}},
]
# Queue types worth running on a broker; the embedded bus has none.
QUEUE_TYPES = ["classic", "quorum"] if os.environ.get("AMQP_URL") else ["classic"]


def sync(stack, user) -> dict:
    response = stack.api("GET", "/api/allergies/", token=user.token)
    assert response.status_code == 200, response.text
    return response.json()["sync"]


def allergy_patches(stack, user) -> list[dict]:
    return [r for r in agent_calls(stack, uid=user.uid, method="PATCH") if r["path"].endswith("/allergies")]


def prefer(stack, user, vibes: list[str]) -> None:
    """PATCH /api/preferences/ with these `vibes`: a later event about the user."""
    response = stack.api("PATCH", "/api/preferences/", token=user.token, json={"preferences": {"vibes": vibes}})
    assert response.status_code == 200, response.text


def agent_vibes(stack, user) -> list | None:
    held = stack.agent.user(user.uid)
    return held["preferences"].get("vibes") if held else None


def agent_allergies(stack, user) -> dict | None:
    held = stack.agent.user(user.uid)
    return held["allergies"] if held else None


def test_sigterm_during_a_slow_agent_call_finishes_the_event_and_exits_0(stack_factory) -> None:
    stack = stack_factory(extra_env={"AGENT_TIMEOUT_SECONDS": "10"})  # slow, but within the timeout
    stack.agent.fault(latency_ms=3000, fail_count=1)
    signup(stack, "slow@example.com")
    # The double counts a latency fault as used when the request arrives: the call is in flight.
    wait_for(lambda: current_fault(stack) is None, timeout=30, interval=0.05, what="the Agent call to start")

    exit_code = stack.kill("consumer0", signal.SIGTERM, timeout=30)

    assert exit_code == 0
    uid = uid_of(stack, "slow@example.com")
    assert stack.agent.user(uid) is not None
    assert bus(stack)["by_type"].get("user.registered", {}).get("backlog", 0) == 0  # settled
    # A fresh consumer finds nothing to redo for that event (it was acked / marked delivered).
    stack.start_consumer(1)
    wait_drained(stack)
    sentinel(stack, "slow@example.com")  # the fresh consumer got past the user's earlier event
    assert len(agent_calls(stack, uid=uid, method="POST")) == 1
    assert "stopping after the event in hand" in (stack.workdir / "consumer0.log").read_text()
    if stack.amqp_url:
        assert stack.kill("relay", signal.SIGTERM, timeout=30) == 0


def test_an_embedded_consumer_killed_mid_handler_keeps_its_user_until_its_ownership_lapses(stack_factory) -> None:
    """Embedded bus: the claim took the user's lease; a consumer SIGKILLed during the Agent call settles
    nothing and frees nothing, so another consumer running beside it takes the user over only once the dead
    one's claim and lease have lapsed (one ownership window after its last renewal), and then delivers it."""
    if os.environ.get("AMQP_URL"):
        pytest.skip("the embedded bus's claims (RabbitMQ's partitions: tests/e2e/test_broker.py)")
    window = 4.0
    stack = stack_factory(extra_env={"AGENT_TIMEOUT_SECONDS": "20", "BUS_OWNERSHIP_SECONDS": str(window)})
    stack.agent.fault(latency_ms=8000, fail_count=1)
    signup(stack, "dies@example.com")
    wait_for(lambda: current_fault(stack) is None, timeout=30, interval=0.05, what="the Agent call to start")
    stack.start_consumer(1)  # a live consumer beside it, looking for work the whole time
    wait_for(lambda: "consumer started" in (stack.workdir / "consumer1.log").read_text(), timeout=60,
             what="the second consumer")

    killed_at = time.time()
    stack.kill("consumer0")  # SIGKILL, mid-call

    uid = uid_of(stack, "dies@example.com")
    wait_for(lambda: len(agent_calls(stack, uid=uid, method="POST")) >= 2, timeout=60, what="the takeover")
    first, second = sorted(call["timestamp"] for call in agent_calls(stack, uid=uid, method="POST"))[:2]
    # Renewed every third of the window while consumer0 lived: it lapses at least 2/3 of a window after the kill.
    assert second >= killed_at + window * 2 / 3 - 0.3, (first, killed_at, second)
    wait_drained(stack)
    assert stack.agent.user(uid) is not None and dead_letters(stack) == 0


def test_one_failing_user_holds_up_no_one_and_gets_the_latest_state_once_the_agent_is_back(stack_factory) -> None:
    # A long first delayed retry: if a failing event blocked the bus, the other user would wait for it.
    stack = stack_factory(extra_env={"BUS_RETRY_DELAYS_SECONDS": "12,1,1,2,2,3,3,5,5,5"})
    ada = create_verified_user(stack, email="ada@example.com")
    bob = create_verified_user(stack, email="bob@example.com", username="bob")
    stack.agent.fault(status=503, paths=ada.uid)

    revisions = [put_allergies(stack, ada, profile)["revision"] for profile in PROFILES]
    wait_for(lambda: bus(stack)["retrying"] >= 1, timeout=20, what="ada's events to wait for a retry")
    put_allergies(stack, bob, PROFILES[0])

    # bob's change reaches the Agent while ada's events wait for their delayed retry
    wait_for(lambda: sync(stack, bob)["state"] == "synced", timeout=10, what="bob synced while ada fails")
    assert agent_allergies(stack, bob)["confirmed"] == ["peanuts"]
    assert agent_allergies(stack, ada)["confirmed"] == []
    assert sync(stack, ada)["state"] == "failing"

    stack.agent.clear_faults()
    wait_for(lambda: sync(stack, ada)["synced_revision"] == revisions[-1], timeout=40, what="ada synced")
    wait_drained(stack)
    assert agent_allergies(stack, ada) == PROFILES[-1]
    # Once the Agent accepted ada's profile, it was never moved back to an older one.
    accepted = [r["body"] for r in agent_calls(stack, uid=ada.uid, method="PATCH") if r["status"] == 200]
    assert accepted and all(body["confirmed"] == PROFILES[-1]["confirmed"] for body in accepted)
    assert dead_letters(stack) == 0


@pytest.mark.parametrize("queue_type", QUEUE_TYPES)
def test_401_dead_letters_at_once_and_replay_delivers_exactly_what_is_selected(stack_factory, queue_type) -> None:
    stack = stack_factory(extra_env={"AMQP_QUEUE_TYPE": queue_type})
    ada = create_verified_user(stack, email="ada@example.com")
    bob = create_verified_user(stack, email="bob@example.com", username="bob")
    stack.agent.fault(status=401)

    put_allergies(stack, ada, PROFILES[0])
    put_allergies(stack, bob, PROFILES[1])
    wait_dead_letters(stack, 2)

    # A later event of ada's (her preferences) that waits for the first delayed retry: once it is
    # delivered, a retry of her or bob's allergy event, scheduled earlier on the same delays, would
    # have come back before it.
    stack.agent.fault(status=503, paths=f"{ada.uid}$")
    prefer(stack, ada, ["quiet"])
    wait_for(lambda: bus(stack)["retrying"] >= 1, timeout=20, what="ada's preferences to wait for a retry")
    stack.agent.clear_faults()
    wait_for(lambda: agent_vibes(stack, ada) == ["quiet"], timeout=20, what="ada's preferences after a retry")
    wait_drained(stack)
    assert len(allergy_patches(stack, ada)) == 1
    assert len(allergy_patches(stack, bob)) == 1
    assert sync(stack, ada)["state"] == "failing"

    dry = replay(stack, "--dry-run")
    assert dry.stdout.count("would replay") == 2 and "nothing changed" in dry.stdout
    assert dead_letters(stack) == 2 and bus(stack)["backlog"] == 0

    stack.agent.clear_faults()  # the token is fixed
    patches_before = [len(allergy_patches(stack, user)) for user in (ada, bob)]
    prefer(stack, ada, ["quiet", "lively"])  # a later event, delivered: the bus is moving
    wait_for(lambda: agent_vibes(stack, ada) == ["quiet", "lively"], timeout=20, what="ada's later event")
    # dead letters stay dead until replayed
    assert [len(allergy_patches(stack, user)) for user in (ada, bob)] == patches_before

    only_ada = replay(stack, "--uid", ada.uid)
    assert "replayed 1," in only_ada.stdout
    wait_for(lambda: agent_allergies(stack, ada) == PROFILES[0], timeout=20, what="ada's replay delivered")
    assert dead_letters(stack) == 1
    assert agent_allergies(stack, bob) == {"confirmed": [], "intolerances": [], "severity": {}}

    nothing = replay(stack, "--type", "user.deleted")
    assert "replayed 0," in nothing.stdout and dead_letters(stack) == 1

    replay(stack, "--type", "allergies.replaced", "--older-than", "1s")
    wait_for(lambda: agent_allergies(stack, bob) == PROFILES[1], timeout=20, what="bob's replay delivered")
    status = wait_drained(stack)
    assert status["dead_letters"] == 0
    assert sync(stack, bob)["state"] == "synced"


def test_a_replayed_allergy_event_older_than_the_agents_revision_is_skipped(stack) -> None:
    ada = create_verified_user(stack, email="ada@example.com")
    stack.agent.fault(status=422, paths=f"{ada.uid}/allergies")
    put_allergies(stack, ada, PROFILES[0])  # revision 1: dead letter
    wait_dead_letters(stack, 1)
    stack.agent.clear_faults()
    put_allergies(stack, ada, PROFILES[1])  # revision 2 reaches the Agent
    wait_for(lambda: sync(stack, ada)["synced_revision"] == 2, timeout=20, what="revision 2 synced")
    patches = len(allergy_patches(stack, ada))

    result = replay(stack)

    assert "skipped 1 as stale" in result.stdout and "revision 1" in result.stdout
    assert dead_letters(stack) == 0
    prefer(stack, ada, ["quiet"])  # a later event of ada's, delivered: a re-sent revision 1 comes first
    wait_for(lambda: agent_vibes(stack, ada) == ["quiet"], timeout=20, what="ada's later event")
    assert len(allergy_patches(stack, ada)) == patches  # nothing re-sent
    assert agent_allergies(stack, ada) == PROFILES[1]
