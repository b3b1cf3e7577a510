"""allergies/selectors.py: the sync state shown to people, and recognised vs custom names."""
from datetime import UTC, datetime

import pytest

from allergies.selectors import SYNC_MESSAGES, AllergyState


def sync_of(state: str, revision: int, synced_revision: int, code: str | None = None) -> dict:
    """The `sync` object of an allergy answer (shared by the tests that check it)."""
    code = code or state
    return {
        "state": state, "code": code, "message": SYNC_MESSAGES[code],
        "revision": revision, "synced_revision": synced_revision,
    }


def failing(error: str) -> AllergyState:
    return AllergyState(["peanuts"], [], {"peanuts": "severe"}, 2, None, 1, error, datetime.now(UTC))


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("AgentConnectionError AGENT_CONNECTION_ERROR: on PATCH /users/u/allergies: refused", "agent_unreachable"),
        ("AgentTimeout AGENT_TIMEOUT: timed out", "agent_unreachable"),
        ("AgentUnavailable 503 AGENT_UNAVAILABLE: AGENT_UNAVAILABLE (HTTP 503)", "agent_unreachable"),
        ("AgentInvalidPayload 422 INVALID_PAYLOAD: bad", "agent_rejected"),
        ("KeyError: 'boom' in /srv/app/consumers/handlers.py", "sync_failed"),
    ],
)
def test_a_failure_is_told_with_a_code_and_no_internal_detail(error, code) -> None:
    sync = failing(error).sync
    assert sync == sync_of("failing", 2, 1, code=code)
    assert "/users/" not in sync["message"] and "Agent" not in sync["message"] and ".py" not in sync["message"]


def test_recognised_and_custom_names() -> None:
    state = AllergyState(["peanuts", "mango"], ["lactose"], {}, 1, None, 0, "", None)
    assert state.recognised == ["peanuts"]
    assert state.custom == ["mango", "lactose"]
