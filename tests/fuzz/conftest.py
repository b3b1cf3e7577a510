"""Fixtures and the run summary of the bad-input suite."""
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest
from django.core import signals
from django.db import close_old_connections, transaction

from tests.fuzz import stats
from tests.fuzz.bodies import fill, request_schema
from tests.security.accounts import Account


@pytest.fixture
def wsgi_in_test_transaction(db) -> Iterator[None]:
    """Let the real WSGI handler serve requests inside the test's transaction.

    Django's handler closes "obsolete" connections at the start and end of every request, and a
    connection inside the test's transaction looks obsolete (autocommit off), so it would be closed
    under the test. Django's own test client disconnects the same receivers for the same reason.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def pytest_sessionstart(session: pytest.Session) -> None:
    stats.started = time.monotonic()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if stats.cases:
        terminalreporter.write_sep("=", "schemathesis")
        terminalreporter.write_line(stats.summary())
        if stats.below_minimum():
            terminalreporter.write_line(f"FAILED: fewer than {stats.MIN_CASES} cases over all operations", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if stats.below_minimum() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED



class DatabaseState:
    """A dump of every table of every model, to prove that a refused request changed nothing."""

    # Written by any authenticated request (at most every few minutes), not by its input.
    VOLATILE = {("identity", "authtoken"): {"last_used_at"}}
    # Throttle counts: every attempt is counted, refused or not (that is their point; with
    # REDIS_URL they are not in the database at all).
    IGNORED = {("throttling", "counter")}

    def dump(self) -> dict:
        from django.apps import apps

        state = {}
        for model in apps.get_models():
            key = (model._meta.app_label, model._meta.model_name)
            if key in self.IGNORED:
                continue
            skip = self.VOLATILE.get(key, set())
            fields = [f.attname for f in model._meta.concrete_fields if f.attname not in skip]
            state[key] = list(model.objects.order_by("pk").values_list(*fields))
        return state

    @contextlib.contextmanager
    def unchanged(self) -> Iterator[None]:
        before = self.dump()
        yield
        after = self.dump()
        changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
        assert not changed, f"the request changed stored state: {changed}"


@pytest.fixture
def db_state(db) -> DatabaseState:
    return DatabaseState()


@pytest.fixture
def send(account: Account, client):
    """send(route, method, body, content_type=...) with the account's token and the service token,
    so the request gets past authentication to the input handling under test."""

    def call(route, method: str, body: bytes, *, content_type: str = "application/json"):
        from django.conf import settings

        from throttling.stores import store_get

        store_get().clear()  # throttles: each case is judged on its input
        return client.generic(
            method,
            route.path,
            data=body,
            content_type=content_type,
            HTTP_AUTHORIZATION=f"Token {account.token}",
            HTTP_X_SERVICE_TOKEN=settings.AGENT_SERVICE_TOKEN,
        )

    return call


class BodyOf:
    """What body an operation takes, learnt from the schema or, where the schema cannot say
    (drf-spectacular documents no DELETE bodies), from the operation itself."""

    _takes_body: ClassVar[dict[tuple[str, str], bool]] = {}

    def __init__(self, send) -> None:
        self.send = send

    def _probe(self, route, method: str, body: bytes):
        with transaction.atomic():  # the probe's own effects (a logout...) are undone
            response = self.send(route, method, body)
            transaction.set_rollback(True)
        return response

    def takes_body(self, route, method: str) -> bool:
        key = (route.key, method)
        if key not in self._takes_body:
            if request_schema(route.path, method) is not None:
                self._takes_body[key] = True
            else:  # an operation that parses its body refuses a truncated one
                response = self._probe(route, method, b"{")
                self._takes_body[key] = response.status_code == 400 and b"parse_error" in response.content
        return self._takes_body[key]

    def __call__(self, route, method: str) -> Callable[[str], object]:
        """A maker of bodies of the operation's shape with every string set to the given text;
        skips the calling test when the operation takes no body."""
        if not self.takes_body(route, method):
            pytest.skip(f"{method} {route.key} takes no body")
        schema = request_schema(route.path, method)
        if schema is None:  # the fields its validation asks for
            errors = json.loads(self._probe(route, method, b"{}").content).get("errors") or {"value": []}
            schema = {"type": "object", "properties": {name: {"type": "string"} for name in errors}}
        return lambda text: fill(schema, text)


@pytest.fixture
def body_of(send) -> BodyOf:
    return BodyOf(send)
