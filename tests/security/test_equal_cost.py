"""Issue 11, finding 4: no flow that takes an email tells by its cost whether the address has an
account.

The attack: signup answered in 6 ms for a taken address and 151 ms for a free one (Argon2 ran
only for new accounts): 24 of 24 single guesses right. Each test here compares the two
*distributions* (many interleaved samples) with real Argon2, not single requests: the medians
must be close and neither side may be systematically faster (the rank statistic, the share of
pairs where the known address was faster, must stay near one half). The flows without a
password (resend, reset) must also do the very same database work either way.
"""
import re
import statistics
import time
import uuid
from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from identity.models import User

pytestmark = [pytest.mark.security, pytest.mark.django_db]

PASSWORD = "a-long-passphrase-42"
ARGON2 = ["django.contrib.auth.hashers.Argon2PasswordHasher"]


@pytest.fixture
def argon2(settings) -> None:
    """Production's hasher (the test settings use a fast one, which would hide the difference)."""
    settings.PASSWORD_HASHERS = ARGON2
    settings.THROTTLING_ENABLED = False


def _account(*, verified: bool = True) -> User:
    user = User.objects.create_user(f"known-{uuid.uuid4().hex[:8]}@example.com", PASSWORD, username="known")
    user.is_verified = verified
    user.save(update_fields=["is_verified"])
    return user


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _samples(known: Callable[[], object], unknown: Callable[[], object], n: int) -> tuple[list[float], list[float]]:
    """n timings of each, interleaved (A B B A ...) so that load from elsewhere hits both alike."""
    known(), unknown()  # warm-up: first-request costs (imports, statement caches)
    a, b = [], []
    for i in range(n):
        if i % 2:
            a.append(_timed(known))
            b.append(_timed(unknown))
        else:
            b.append(_timed(unknown))
            a.append(_timed(known))
    return a, b


def _faster_share(a: list[float], b: list[float]) -> float:
    """Mann-Whitney's U / (n_a n_b): the share of pairs where a sample of `a` beat one of `b`.
    One half when the two distributions are the same; 0 or 1 when one side is always faster."""
    wins = sum((x < y) + 0.5 * (x == y) for x in a for y in b)
    return wins / (len(a) * len(b))


def assert_same_cost(a: list[float], b: list[float], *, what: str, ratio: float, floor: float) -> None:
    ma, mb = statistics.median(a), statistics.median(b)
    share = _faster_share(a, b)
    summary = f"{what}: median known {ma * 1000:.1f} ms, unknown {mb * 1000:.1f} ms, known faster in {share:.0%}"
    print(summary)  # shown with -s: the figures behind the verdict
    # The absolute floor keeps sub-millisecond scheduling noise of cheap flows from counting.
    assert max(ma, mb) <= ratio * min(ma, mb) + floor, summary
    assert 0.08 <= share <= 0.92, summary  # about 3.5 standard deviations of the statistic at n=12


def test_signup_costs_the_same_for_a_taken_and_a_free_address(argon2) -> None:
    client = APIClient()
    taken = _account().email

    def body(email: str) -> dict:
        return {"username": "someone", "email": email, "password": PASSWORD}

    a, b = _samples(
        lambda: client.post("/api/signup/", body(taken), format="json"),
        lambda: client.post("/api/signup/", body(f"new-{uuid.uuid4().hex}@example.com"), format="json"),
        n=12,
    )
    assert_same_cost(a, b, what="signup", ratio=1.5, floor=0.005)


@pytest.mark.parametrize("verified", [True, False], ids=["verified", "unverified"])
def test_login_costs_the_same_for_a_known_and_an_unknown_address(argon2, verified) -> None:
    client = APIClient()
    known = _account(verified=verified).email

    def body(email: str) -> dict:
        return {"email": email, "password": "not-the-password-1"}

    a, b = _samples(
        lambda: client.post("/api/login/", body(known), format="json"),
        lambda: client.post("/api/login/", body(f"nobody-{uuid.uuid4().hex}@example.com"), format="json"),
        n=12,
    )
    assert_same_cost(a, b, what="login", ratio=1.5, floor=0.005)


EMAIL_FLOWS = ["/api/verify/resend/", "/api/password/reset/"]


@pytest.mark.parametrize("path", EMAIL_FLOWS)
def test_email_flows_cost_the_same_for_a_known_and_an_unknown_address(argon2, path) -> None:
    client = APIClient()
    known = _account(verified=path != "/api/verify/resend/").email
    a, b = _samples(
        lambda: client.post(path, {"email": known}, format="json"),
        lambda: client.post(path, {"email": f"nobody-{uuid.uuid4().hex}@example.com"}, format="json"),
        n=40,
    )
    assert_same_cost(a, b, what=path, ratio=1.5, floor=0.002)


def _statements(client: APIClient, path: str, body: dict) -> list[str]:
    """The SQL a request ran, with every literal blanked: the shape of its work."""
    with CaptureQueriesContext(connection) as queries:
        client.post(path, body, format="json")
    literal = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b|\"s\d+_x\d+\"")
    return [literal.sub("?", query["sql"]) for query in queries.captured_queries]


@pytest.mark.parametrize(
    ("path", "account_kwargs", "extra"),
    [
        ("/api/verify/resend/", {"verified": False}, {}),
        ("/api/verify/resend/", {"verified": True}, {}),
        ("/api/password/reset/", {"verified": True}, {}),
        ("/api/login/", {"verified": True}, {"password": "not-the-password-1"}),
        ("/api/login/", {"verified": False}, {"password": "not-the-password-1"}),
    ],
    ids=["resend-unverified", "resend-verified", "reset", "login", "login-unverified"],
)
def test_email_flows_do_the_same_database_work_for_known_and_unknown_addresses(
    path, account_kwargs, extra, settings
) -> None:
    """Deterministic twin of the timing tests: a flow that queued an email (an outbox row) only for
    a real account took one more INSERT and commit for it, which is measurable with enough tries."""
    settings.THROTTLING_ENABLED = False
    client = APIClient()
    known = _account(**account_kwargs).email
    for _ in range(2):  # warm: the first request may run one-off statements
        _statements(client, path, {"email": known, **extra})
        _statements(client, path, {"email": "nobody@example.com", **extra})
    assert _statements(client, path, {"email": known, **extra}) == _statements(
        client, path, {"email": f"nobody-{uuid.uuid4().hex[:6]}@example.com", **extra}
    )


def test_the_consumer_drops_the_event_queued_for_nobody(settings) -> None:
    """The unknown-address twin of a reset or resend is an email.requested event for a uid that
    names no account: the consumer must finish it quietly (no email, no dead letter, no retry)."""
    import threading

    from django.core import mail

    from agent_bridge.agent_client import AgentClient
    from agent_bridge.models import OutboxEvent
    from agent_bridge.timing import bus_timing
    from agent_bridge.transports.embedded import EmbeddedTransport
    from consumers.models import DeadLetter
    from consumers.runners import Consumer

    settings.THROTTLING_ENABLED = False
    client = APIClient()
    assert client.post("/api/password/reset/", {"email": "nobody@example.com"}, format="json").status_code == 202
    assert client.post("/api/verify/resend/", {"email": "nobody@example.com"}, format="json").status_code == 202
    transport = EmbeddedTransport(stop=threading.Event(), timing=bus_timing(), worker_id="test-worker")
    consumer = Consumer(transport=transport, stop=transport.stop, agent=AgentClient.from_settings())
    assert OutboxEvent.objects.filter(type="email.requested").count() == 2
    for _ in range(2):
        delivery = transport.claim()
        assert delivery is not None and consumer.handle(delivery).done
    assert mail.outbox == [] and not DeadLetter.objects.exists()
    assert not OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).exists()
