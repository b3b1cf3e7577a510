"""Issue 11 item 3: public health enumerated accounts.

`/api/health/` answered the bus backlog by event type: a signup, resend or reset naming an
existing account raised an `email.requested` event ("you already have an account", a reset
link) that an unknown address did not, and the public counter moved (20/20). Public probes
now say up or down only; the figures are for operators (bus_status, the admin, /metrics).
"""
import pytest
from django.test import Client

pytestmark = [pytest.mark.security, pytest.mark.django_db]

PROBES = ("/api/health/", "/api/health/live/", "/api/health/ready/")
# Every public flow that takes an email and could raise an event for an existing account only.
FLOWS = (
    ("/api/signup/", lambda email: {"username": "mallory", "email": email, "password": "a-long-passphrase-42"}),
    ("/api/verify/resend/", lambda email: {"email": email}),
    ("/api/password/reset/", lambda email: {"email": email}),
)


def _public_answers() -> dict[str, tuple[int, bytes]]:
    answers = {}
    for path in PROBES:
        response = Client().get(path)
        answers[path] = (response.status_code, response.content)
    return answers


@pytest.mark.parametrize(("flow", "body"), FLOWS, ids=[flow for flow, _ in FLOWS])
def test_a_flow_naming_an_existing_email_moves_no_public_answer(flow, body, user, outbox, settings) -> None:
    settings.THROTTLE_RATES = {}  # the flows' throttles are not what is tested here
    before = _public_answers()

    unknown = Client().post(flow, body("nobody-here@example.com"), content_type="application/json")
    after_unknown = _public_answers()
    existing = Client().post(flow, body(user.email), content_type="application/json")
    after_existing = _public_answers()

    assert unknown.status_code == existing.status_code
    # The control: the existing address did raise an event that the unknown one did not...
    assert outbox("email.requested"), "the flow raised nothing for the existing account"
    # ...and no public answer shows it.
    assert before == after_unknown == after_existing
    for status, content in after_existing.values():
        assert status == 200
        assert b"backlog" not in content and b"dead_letters" not in content and b"by_type" not in content
