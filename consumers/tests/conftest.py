"""Fixtures for the consumer's tests: a real Agent double in this process."""
from collections.abc import Iterator

import pytest
from django.conf import settings

from agent_bridge.agent_client import AgentClient
from agent_bridge.devagent import DevAgentServer


@pytest.fixture(scope="session")
def devagent_server() -> Iterator[DevAgentServer]:
    with DevAgentServer(token=settings.AGENT_SERVICE_TOKEN) as server:
        yield server


@pytest.fixture
def devagent(devagent_server: DevAgentServer) -> DevAgentServer:
    """The in-process Agent double (main + control ports on loopback), reset for each test."""
    devagent_server.state.reset()
    devagent_server.up()
    return devagent_server


@pytest.fixture
def agent(devagent: DevAgentServer) -> Iterator[AgentClient]:
    """An AgentClient talking to `devagent` over HTTP, as the consumer does."""
    with AgentClient(base_url=devagent.base_url, service_token=settings.AGENT_SERVICE_TOKEN, timeout=2) as client:
        yield client
