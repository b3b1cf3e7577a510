"""The consumer tests' in-process Agent double, shared with the verification tests; and the
scripted HTTP server the Agent client's tests run against."""
from collections.abc import Iterator

import pytest

from agent_bridge.tests.scripted_http import ScriptedServer
from consumers.tests.conftest import agent, devagent, devagent_server  # noqa: F401


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedServer]:
    """A scripted HTTP server on loopback (agent_bridge.tests.scripted_http), reached without any
    proxy of the environment; at teardown every request must have been scripted, and every
    scripted answer served."""
    with ScriptedServer() as server:
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        yield server
        server.verify()
