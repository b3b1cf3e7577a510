"""Fixtures shared by every app's tests and the end-to-end suite."""
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from rest_framework.test import APIClient


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
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def member(db):
    """A verified user (allergies, preferences and interactions tests)."""
    from identity.models import User

    return User.objects.create_user(
        email="member@example.com", password="a-long-passphrase-42", username="member", is_verified=True  # noqa: S106
    )


@pytest.fixture
def member_client(api_client, member) -> APIClient:
    """`api_client` authenticated as `member`."""
    api_client.force_authenticate(member)
    return api_client


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
