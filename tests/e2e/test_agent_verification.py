"""The Agent's copy verified, not assumed, over real processes on both transports: a late apply
undone by read-back without any command, drift and leftovers repaired by reconcile_agent, a
forgetful Agent restored by resync_agent (agent_bridge/verification.py, docs/operations.md)."""

import json
import time

import pytest

from agent_bridge.verification import MAX_REPAIRS
from tests.e2e.harness import wait_for
from tests.e2e.helpers import create_verified_user

# Read-back after 1, 2, 4 and 8 s: a horizon of 15 s (the default is 187 s).
DELAYS = [1, 2, 4, 8]
HORIZON = sum(DELAYS)
# The Agent double holds the timed-out request this long (the stack's AGENT_TIMEOUT_SECONDS is 2).
HOLD_MS = 4000

OLD = {"confirmed": ["peanuts"], "intolerances": [], "severity": {"peanuts": "anaphylactic"}}
NEW = {"confirmed": ["sesame"], "intolerances": ["lactose"], "severity": {"sesame": "severe", "lactose": "intolerance"}}
EMPTY = {"confirmed": [], "intolerances": [], "severity": {}}

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def vstack(request, stack_factory, monkeypatch):
    """A stack on the embedded bus or on RabbitMQ (with the relay), with a short read-back horizon."""
    if request.param == "embedded":
        monkeypatch.delenv("AMQP_URL", raising=False)
    return stack_factory(extra_env={"AGENT_READ_BACK_DELAYS_SECONDS": ",".join(map(str, DELAYS))})


def allergies(stack, user) -> dict:
    response = stack.api("GET", "/api/allergies/", token=user.token)
    assert response.status_code == 200, response.text
    return response.json()


def put(stack, user, body: dict) -> int:
    response = stack.api("PUT", "/api/allergies/", token=user.token, json=body)
    assert response.status_code == 200, response.text
    return response.json()["revision"]


def at_agent(stack, user) -> dict | None:
    held = stack.agent.user(user.uid)
    return None if held is None else held["allergies"]


def synced(stack, user, revision: int) -> bool:
    sync = allergies(stack, user)["sync"]
    return sync["state"] == "synced" and sync["revision"] == revision


def manage_json(stack, *args: str) -> dict:
    done = stack.manage(*args, "--json", timeout=180)
    return json.loads(done.stdout.strip().splitlines()[-1])


def user_with(stack, email: str, body: dict, preferences: dict | None = None):
    user = create_verified_user(stack, email=email)
    revision = put(stack, user, body)
    if preferences:
        assert (
            stack.api("PATCH", "/api/preferences/", token=user.token, json={"preferences": preferences}).status_code
            == 200
        )
    wait_for(lambda: synced(stack, user, revision), timeout=60, what=f"{email} synced")
    return user


def test_a_late_apply_of_an_older_request_is_undone_without_any_command(vstack) -> None:
    """The double holds the PATCH of revision 1 past the consumer's timeout and applies it after
    revision 2 was delivered. Read-back finds it and puts revision 2 back: within one read-back
    step after the late apply (at most the longest delay, 8 s here, plus a delivery), and in any
    case within the horizon of the uncertain call; the profile is never `synced` meanwhile."""
    stack = vstack
    user = create_verified_user(stack, email="late@example.com")
    wait_for(lambda: stack.agent.user(user.uid), timeout=60, what="the user at the Agent")
    stack.agent.late_apply(hold_ms=HOLD_MS, paths="/allergies$", count=1)

    assert put(stack, user, OLD) == 1
    wait_for(lambda: stack.agent.misbehaviour()["late_apply"]["held"] == 1, timeout=30, what="the PATCH held")
    uncertain_at = time.monotonic()
    assert put(stack, user, NEW) == 2
    wait_for(lambda: at_agent(stack, user) == NEW, timeout=30, what="revision 2 delivered")

    # Sample until the late apply has landed and been repaired; never `synced` with the old copy.
    samples: list[tuple[bool, str]] = []
    late_at: list[float] = []

    def repaired() -> bool:
        if not late_at and stack.agent.misbehaviour()["late_apply"]["applied"] == 1:
            late_at.append(time.monotonic())
        held, state = at_agent(stack, user), allergies(stack, user)["sync"]["state"]
        samples.append((held == OLD, state))
        return bool(late_at) and held == NEW

    wait_for(repaired, timeout=HORIZON + 30, interval=0.05, what="the late apply landed and undone")
    done_at = time.monotonic()
    landed, arrived = done_at - late_at[0], done_at - uncertain_at
    print(f"late apply undone {landed:.1f}s after it landed, {arrived:.1f}s after it arrived")
    assert (True, "synced") not in samples, "the profile said synced while the Agent held the older state"
    assert done_at - uncertain_at <= HORIZON + 10, f"repaired {done_at - uncertain_at:.1f}s after the uncertain call"
    assert done_at - late_at[0] <= max(DELAYS) + 5, f"repaired {done_at - late_at[0]:.1f}s after the late apply"

    # The double's log: revision 2 delivered, then the older request applied late, then repaired.
    patches = [r for r in stack.agent.requests() if r["method"] == "PATCH" and r["path"].endswith("/allergies")]
    late = next(i for i, r in enumerate(patches) if r["late"])
    assert patches[late]["body"] == OLD
    assert any(r["body"] == NEW for r in patches[:late]), "the late apply came after the newer state"
    assert patches[-1]["body"] == NEW and not patches[-1]["late"]

    wait_for(lambda: synced(stack, user, 2), timeout=2 * HORIZON + 30, what="synced once the read-back resolves")
    assert at_agent(stack, user) == NEW
    status = stack.bus_status()["verification"]
    assert status["drift"]["allergies"] >= 1 and status["verifying"] == 0
    assert allergies(stack, user)["sync"]["verified_at"] is not None


def test_an_older_create_landing_after_the_erasure_is_erased_again_without_any_command(vstack) -> None:
    """Found by the chaos run: the double holds the user's create past the consumer's timeout (a
    read-back starts; the retry creates the user), the account is deleted (which ends that
    read-back) and erased at the Agent, then the held create lands and re-creates the user. The
    erasure's own read-back finds the user there and erases it again."""
    stack = vstack
    hold_ms = 8000  # the deletion must reach the Agent before the held create lands
    stack.agent.late_apply(hold_ms=hold_ms, paths=r"^/users/[^/]+$", count=1)
    user = create_verified_user(stack, email="late-create@example.com")
    response = stack.api("DELETE", "/api/account/", token=user.token, json={"password": user.password})
    assert response.status_code in (200, 202, 204), response.text
    wait_for(lambda: stack.agent.user(user.uid) is None, timeout=30, what="the erasure delivered")
    assert stack.agent.misbehaviour()["late_apply"]["held"] == 1, "the create still held after the erasure"

    wait_for(lambda: stack.agent.misbehaviour()["late_apply"]["applied"] == 1, timeout=30, what="the held create")
    log = [(r["method"], r["late"]) for r in stack.agent.requests() if user.uid in r["path"]]
    assert log.index(("POST", True)) > log.index(("DELETE", False)), "the older create landed after the erasure"
    wait_for(lambda: stack.agent.user(user.uid) is None, timeout=HORIZON + 30, what="the re-created user erased")
    assert stack.bus_status()["verification"]["drift"]["leftover"] >= 1


def test_dropped_and_altered_allergies_are_detected_reported_and_repaired_by_reconcile(vstack) -> None:
    stack = vstack
    dropped = user_with(stack, "dropped@example.com", OLD)
    altered = user_with(stack, "altered@example.com", NEW)
    fine = user_with(stack, "fine@example.com", OLD)
    stack.agent.tamper(dropped.uid, allergies=None)
    stack.agent.tamper(altered.uid, allergies={**NEW, "severity": {"sesame": "moderate", "lactose": "intolerance"}})

    report = manage_json(stack, "reconcile_agent", "--dry-run")
    assert (report["checked"], report["equal"], report["drifted"], report["repaired"]) == (3, 1, 2, 0)
    assert report["drifted_by_kind"]["allergies"] == 2
    assert at_agent(stack, dropped) == EMPTY, "a dry run changes nothing"

    report = manage_json(stack, "reconcile_agent")
    assert (report["drifted_by_kind"]["allergies"], report["repaired"]) == (2, 2)
    wait_for(
        lambda: at_agent(stack, dropped) == OLD and at_agent(stack, altered) == NEW,
        timeout=60,
        what="the repairs delivered",
    )
    assert at_agent(stack, fine) == OLD
    for user in (dropped, altered):
        wait_for(lambda u=user: synced(stack, u, 1), timeout=2 * HORIZON + 30, what="synced after the repair")
    assert manage_json(stack, "reconcile_agent")["equal"] == 3
    assert stack.bus_status()["verification"]["drift"]["allergies"] == 2


def test_resync_restores_every_user_exactly_after_the_agent_forgot_everything(vstack) -> None:
    stack = vstack
    users = [
        user_with(stack, f"r{n}@example.com", body, preferences={"vibes": [f"v{n}"], "price_comfort": ["$$"]})
        for n, body in enumerate((OLD, NEW, EMPTY))
    ]
    stack.wait_drained()
    before = {user.uid: stack.agent.user(user.uid) for user in users}
    stack.agent.forget()
    assert stack.agent.state() == {"users": {}}

    result = manage_json(stack, "resync_agent", "--timeout", "120")
    assert (result["users"], result["delivered"], result["dead"], result["finished"]) == (3, 3, 0, True)
    for user in users:
        held = stack.agent.user(user.uid)
        for key in ("allergies", "allergy_flags", "preferences"):
            assert held[key] == before[user.uid][key], (user.email, key)
        assert allergies(stack, user)["sync"]["state"] == "synced"


def test_a_user_deleted_here_but_kept_by_the_agent_is_erased_by_reconcile(vstack) -> None:
    stack = vstack
    user = user_with(stack, "kept@example.com", OLD)
    # The erasure's own read-back erases a kept user again, MAX_REPAIRS times, then leaves it to reconcile.
    erasures = 1 + MAX_REPAIRS
    stack.agent.keep_erased(paths=user.uid, count=erasures)
    response = stack.api("DELETE", "/api/account/", token=user.token, json={"password": user.password})
    assert response.status_code in (200, 202, 204), response.text
    wait_for(lambda: stack.agent.misbehaviour()["keep_erased"]["kept"] == erasures, timeout=120,
             what="every erasure ignored")
    wait_for(lambda: stack.bus_status()["verification"]["verifying"] == 0, timeout=2 * HORIZON + 30,
             what="automatic repair given up")
    stack.wait_drained()
    assert stack.agent.user(user.uid) is not None, "the double kept the erased user"

    report = manage_json(stack, "reconcile_agent")
    assert (report["drifted_by_kind"]["leftover"], report["repaired"]) == (1, 1)
    wait_for(lambda: stack.agent.user(user.uid) is None, timeout=60, what="the leftover erased through the bus")
    assert manage_json(stack, "reconcile_agent", "--uid", user.uid)["equal"] == 1
