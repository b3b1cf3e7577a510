"""Fixtures shared by every app's tests and the end-to-end suite."""
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from rest_framework.test import APIClient

if TYPE_CHECKING:
    from identity.models import User
    from identity.services import IssuedToken


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `rabbitmq` or `postgres` run only where the run has that server."""
    skip_amqp = pytest.mark.skip(reason="needs RabbitMQ: set AMQP_URL (bash .ci/run does)")
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://... (bash .ci/run does)")
    for item in items:
        if "rabbitmq" in item.keywords and not os.environ.get("AMQP_URL"):
            item.add_marker(skip_amqp)
        if "postgres" in item.keywords and not os.environ.get("DATABASE_URL", "").startswith("postgres"):
            item.add_marker(skip_pg)


@pytest.fixture
def orm_compilations_refused():
    """A context manager factory: while open, any query the ORM compiles (SELECT, INSERT, UPDATE,
    DELETE) fails the test. For the hot paths whose statements are written by hand."""
    from contextlib import ExitStack
    from unittest import mock

    from django.db.models.sql import compiler

    def refused() -> ExitStack:
        stack = ExitStack()
        for klass in (compiler.SQLCompiler, compiler.SQLInsertCompiler, compiler.SQLUpdateCompiler,
                      compiler.SQLDeleteCompiler):
            stack.enter_context(mock.patch.object(klass, "as_sql", side_effect=AssertionError("ORM compiled a query")))
        return stack

    return refused


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


PASSWORD = "a-long-passphrase-42"  # noqa: S105 (test users only)


def _make_user(*, email: str, verified: bool) -> "User":
    from identity.models import User

    user = User.objects.create_user(email=email, password=PASSWORD, username=email.split("@")[0])
    if verified:
        user.is_verified = True
        user.save(update_fields=["is_verified"])
    return user


@pytest.fixture
def password() -> str:
    return PASSWORD


@pytest.fixture
def user(db) -> "User":
    """An unverified user whose password is the `password` fixture."""
    return _make_user(email="unverified@example.com", verified=False)


@pytest.fixture
def verified_user(db) -> "User":
    """A verified user whose password is the `password` fixture."""
    return _make_user(email="ada@example.com", verified=True)


@pytest.fixture
def issued_token(verified_user) -> "IssuedToken":
    """A real login token of `verified_user` (`.raw` is the secret, `.token` the row)."""
    from identity import services

    return services.auth_token_issue(user=verified_user)


@pytest.fixture
def unusable_tokens(verified_user) -> dict[str, str]:
    """Raw tokens that must authenticate nothing: one of `verified_user`'s revoked, one expired,
    and one never issued."""
    from datetime import timedelta

    from django.utils import timezone

    from identity import services

    revoked = services.auth_token_issue(user=verified_user)
    services.auth_token_revoke(token=revoked.token)
    expired = services.auth_token_issue(user=verified_user)
    expired.token.expires_at = timezone.now() - timedelta(seconds=1)
    expired.token.save()
    return {"revoked": revoked.raw, "expired": expired.raw, "unknown": "not-a-token"}


@pytest.fixture
def auth_client(issued_token) -> APIClient:
    """An APIClient that sends `verified_user`'s real token on every request."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issued_token.raw}")
    return client


@pytest.fixture
def outbox():
    """outbox(type) → the OutboxEvents of that type, oldest first."""
    from agent_bridge.models import OutboxEvent

    def events(event_type: str) -> list[OutboxEvent]:
        return list(OutboxEvent.objects.filter(type=event_type).order_by("id"))

    return events


@pytest.fixture
def deliver_mail():
    """deliver_mail() runs the consumer's email handler on every undelivered `email.requested`
    event, oldest first, marks them delivered, and returns django.core.mail.outbox (the sent mail)."""
    from django.core import mail
    from django.utils import timezone

    from agent_bridge import events
    from agent_bridge.models import OutboxEvent
    from consumers.handlers import HANDLERS

    def deliver() -> list:
        queued = OutboxEvent.objects.filter(type=events.EMAIL_REQUESTED).exclude(status=OutboxEvent.Status.DELIVERED)
        for event in queued.order_by("id"):
            HANDLERS[events.EMAIL_REQUESTED](event.envelope, None)
            OutboxEvent.objects.filter(pk=event.pk).update(
                status=OutboxEvent.Status.DELIVERED, delivered_at=timezone.now()
            )
        return mail.outbox

    return deliver


@pytest.fixture
def clear_cache(db, throttle_clock):
    """Empty the throttle counts (the store the settings name) before and after a test; the throttles'
    clock stands still (a window boundary mid-test would reset the counts under test)."""
    from throttling.stores import store_get

    store = store_get()
    store.clear()
    yield store
    store.clear()


@pytest.fixture(autouse=True)
def _redis_throttle_counts_isolated() -> Iterator[None]:
    """With REDIS_URL set (CI's second pass) throttle counts outlive the test's database transaction:
    each test starts with none. (The embedded store's rows roll back with the test.)"""
    if not os.environ.get("REDIS_URL"):
        yield
        return
    from django.conf import settings

    from throttling.stores import store_get

    if settings.REDIS_URL:
        store_get().clear()
    yield


@pytest.fixture(params=["embedded", "redis"])
def throttle_store(request: pytest.FixtureRequest, settings, db, throttle_clock):
    """Each throttle test twice: on the embedded table and on Redis (REDIS_URL; skipped without it).
    The throttles' clock stands still unless the test moves it (`throttle_clock`)."""
    from throttling.stores import store_get

    if request.param == "redis":
        url = os.environ.get("REDIS_URL")
        if not url:
            pytest.skip("needs Redis: set REDIS_URL=redis://127.0.0.1:6379/0 (bash .ci/run's second pass does)")
        settings.REDIS_URL = url
    else:
        settings.REDIS_URL = ""
    store = store_get()
    store.clear()
    yield store
    store.clear()


class ThrottleClock:
    """The throttles' clock, moved forward by tests instead of sleeping through a window."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def throttle_clock(monkeypatch) -> ThrottleClock:
    import time

    from throttling import stores

    # At the start of a day, so every window (they divide a day) starts with the test: Redis keys get
    # their whole window as TTL in real time, which outlasts the test.
    clock = ThrottleClock(time.time() // 86400 * 86400)
    monkeypatch.setattr(stores, "clock", clock)
    return clock


@pytest.fixture
def stack_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator:
    """Start real processes: `stack_factory(consumers=1, extra_env={...})` → a started Stack."""
    from tests.e2e.harness import Stack

    stacks: list[Stack] = []

    def make(**kwargs) -> Stack:
        stack = Stack(tmp_path / f"stack{len(stacks)}", **kwargs)
        stack.workdir.mkdir()
        stacks.append(stack)
        return stack.start()

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for stack in stacks:
        if failed:
            print(stack.logs())
        stack.stop()


@pytest.fixture
def stack(stack_factory):
    return stack_factory()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
