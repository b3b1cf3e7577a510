"""The walking skeleton over real processes: signup → outbox → bus → consumer → Agent."""
import time

import pytest

from tests.e2e.bus_helpers import bus, sentinel
from tests.e2e.harness import SERVICE_TOKEN, wait_for
from tests.e2e.helpers import signup

pytestmark = pytest.mark.e2e


def agent_creates(stack) -> list[dict]:
    return [r for r in stack.agent.requests() if r["method"] == "POST" and r["path"].startswith("/users/")]


def test_signup_creates_the_user_at_the_agent_once(stack) -> None:
    signup(stack, "ada@example.com")

    users = wait_for(lambda: stack.agent.state()["users"], what="the Agent to hold the user")
    stack.wait_drained()
    sentinel(stack, "ada@example.com")  # a duplicate delivery of her event would come before this one

    assert len(users) == 1
    creates = agent_creates(stack)
    effective = [r for r in creates if r["status"] in (200, 201)]
    assert len(effective) >= 1
    assert all(r["token_valid"] for r in creates)
    assert len(stack.agent.state()["users"]) == 1


def test_signup_answers_while_the_agent_refuses_connections_and_syncs_later(stack) -> None:
    stack.agent.down()

    started = time.monotonic()
    signup(stack, "grace@example.com")
    assert time.monotonic() - started < 5  # the view never waits on the Agent

    wait_for(lambda: bus(stack)["retrying"] >= 1, timeout=30, what="the consumer to try while the Agent is down")
    assert stack.agent.state()["users"] == {}
    stack.agent.up()
    wait_for(lambda: stack.agent.state()["users"], timeout=60, what="the user to reach the Agent after it came back")
    assert SERVICE_TOKEN  # the double only accepted requests carrying the right token


def test_createsuperuser_creates_the_user_at_the_agent(stack) -> None:
    """Not only signup: `manage.py createsuperuser` goes through the same service and event."""
    stack.env["DJANGO_SUPERUSER_PASSWORD"] = "root-passphrase-123"
    try:
        stack.manage("createsuperuser", "--noinput", "--email", "root@example.com", "--username", "root")
    finally:
        del stack.env["DJANGO_SUPERUSER_PASSWORD"]

    users = wait_for(lambda: stack.agent.state()["users"], what="the Agent to hold the superuser")
    assert len(users) == 1
    assert [r["status"] for r in agent_creates(stack)][-1] == 201
