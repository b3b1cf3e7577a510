"""Unit tests of AgentClient against a scripted HTTP server on loopback (scripted_http).

They pin what goes on the wire for each Agent endpoint and how every kind of
failure maps onto the typed errors the consumer's retry policy relies on. The
server is real HTTP/1.1, so they hold whatever HTTP library the client uses.
No database, no Django needed (except the one ``from_settings`` test).
"""

from __future__ import annotations

import logging
import traceback
import uuid

import pytest
import urllib3

from agent_bridge.agent_client import (
    USER_AGENT,
    AgentAuthError,
    AgentClient,
    AgentConnectionError,
    AgentConnectionLost,
    AgentError,
    AgentInvalidPayload,
    AgentMissingUserId,
    AgentPermanentError,
    AgentResponseTimeout,
    AgentTimeout,
    AgentTransientError,
    AgentUnavailable,
    AgentUserNotFound,
)
from agent_bridge.tests.scripted_http import Call, ScriptedServer, refused_base_url

BASE = "http://agent.test"
TOKEN = "s3cret-service-token-0123456789abcdef"
UID = "550e8400-e29b-41d4-a716-446655440000"
USER_PATH = f"/users/{UID}"
#: The read timeout of the clients that meet a stalled answer (the server holds it 2 s).
SHORT_TIMEOUT = 0.2


@pytest.fixture
def client() -> AgentClient:
    return AgentClient(base_url=f"{BASE}/", service_token=TOKEN, timeout=10)


@pytest.fixture
def scripted_client(scripted: ScriptedServer) -> AgentClient:
    return AgentClient(base_url=f"{scripted.base_url}/", service_token=TOKEN, timeout=10)


def _sent(scripted: ScriptedServer) -> Call:
    """The last request, which carried the service token."""
    call = scripted.calls[-1]
    assert call.headers["X-Service-Token"] == TOKEN
    return call


# --- construction -----------------------------------------------------------


def test_timeout_caps_connect_part_and_keeps_read_part():
    client = AgentClient(base_url=BASE, service_token=TOKEN, timeout=10)
    assert client.timeout == (3.05, 10.0)
    short = AgentClient(base_url=BASE, service_token=TOKEN, timeout=2)
    assert short.timeout == (2.0, 2.0)


def test_repr_does_not_show_the_token(client):
    assert TOKEN not in repr(client)


def test_the_request_on_the_wire(scripted_client, scripted):
    scripted.patch(f"{USER_PATH}/allergies", json={"uid": UID, "allergy_flags": [], "updated": True})
    scripted_client.replace_allergies(uid=UID, confirmed=["peanut"], intolerances=[], severity={"peanut": "severe"})
    sent = _sent(scripted)
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["User-Agent"] == USER_AGENT
    assert sent.headers["Content-Type"] == "application/json"
    assert "traceparent" in sent.headers
    assert sent.json() == {"confirmed": ["peanut"], "intolerances": [], "severity": {"peanut": "severe"}}


def test_connections_are_kept_alive_between_calls(scripted_client, scripted):
    for _ in range(3):
        scripted.get(USER_PATH, json={"uid": UID})
        scripted_client.get_user(uid=UID)
    assert scripted.connections_accepted == 1


def test_the_agents_cookies_are_never_sent_back(scripted_client, scripted):
    # The service token is the Agent's only credential: a cookie it sets is not kept.
    scripted.get(USER_PATH, json={"uid": UID}, headers={"Set-Cookie": "sid=abc; Path=/"})
    scripted.get(USER_PATH, json={"uid": UID})
    scripted_client.get_user(uid=UID)
    scripted_client.get_user(uid=UID)
    assert len(scripted.calls) == 2
    assert "Cookie" not in scripted.calls[-1].headers


def test_from_settings_reads_the_agent_settings(request):
    if not request.config.pluginmanager.hasplugin("django"):
        pytest.skip("needs pytest-django")
    settings = request.getfixturevalue("settings")
    settings.AGENT_BASE_URL = "http://agent.example:4021/"
    settings.AGENT_SERVICE_TOKEN = TOKEN
    settings.AGENT_TIMEOUT_SECONDS = 4
    client = AgentClient.from_settings()
    assert client.base_url == "http://agent.example:4021"
    assert client.timeout == (3.05, 4.0)
    assert client._token == TOKEN


# --- one test per endpoint: method, URL, headers, body, result --------------


def test_create_user_sends_the_full_default_payload(scripted_client, scripted):
    scripted.post(USER_PATH, status=201, json={"uid": UID, "created": True})
    assert scripted_client.create_user(uid=UID) == {"uid": UID, "created": True}
    sent = _sent(scripted)
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json() == {
        "preferences": {},
        "allergies": {},
        "dietary_flags": [],
        "vibe_tags": [],
        "allergy_flags": [],
    }


def test_create_user_with_values_and_existing_user(scripted_client, scripted):
    scripted.post(USER_PATH, status=200, json={"uid": UID, "created": False})
    allergies = {
        "confirmed": ["peanuts"],
        "intolerances": [],
        "severity": {"peanuts": "anaphylactic"},
    }
    result = scripted_client.create_user(
        uid=uuid.UUID(UID),
        preferences={"vibes": ["quiet"]},
        allergies=allergies,
        dietary_flags=["vegan"],
        vibe_tags=["quiet"],
        allergy_flags=["peanuts"],
    )
    assert result == {"uid": UID, "created": False}
    assert scripted.calls[-1].json() == {
        "preferences": {"vibes": ["quiet"]},
        "allergies": allergies,
        "dietary_flags": ["vegan"],
        "vibe_tags": ["quiet"],
        "allergy_flags": ["peanuts"],
    }


def test_get_user(scripted_client, scripted):
    profile = {"uid": UID, "preferences": {}, "allergy_flags": []}
    scripted.get(USER_PATH, json=profile)
    assert scripted_client.get_user(uid=UID) == profile
    sent = _sent(scripted)
    assert sent.body == b""
    assert sent.query == {}


def test_update_preferences_wraps_the_delta(scripted_client, scripted):
    scripted.patch(USER_PATH, json={"uid": UID, "updated": True})
    assert scripted_client.update_preferences(uid=UID, preferences={"vibes": ["x"]}) == {
        "uid": UID,
        "updated": True,
    }
    assert _sent(scripted).json() == {"preferences": {"vibes": ["x"]}}


def test_replace_allergies_sends_the_full_state(scripted_client, scripted):
    body = {
        "confirmed": ["peanuts", "shellfish"],
        "intolerances": ["lactose"],
        "severity": {"peanuts": "anaphylactic", "shellfish": "severe", "lactose": "intolerance"},
    }
    answer = {"uid": UID, "allergy_flags": ["lactose", "peanuts", "shellfish"], "updated": True}
    scripted.patch(f"{USER_PATH}/allergies", json=answer)
    assert scripted_client.replace_allergies(uid=UID, **body) == answer
    assert _sent(scripted).json() == body


def test_replace_allergies_with_an_empty_profile(scripted_client, scripted):
    scripted.patch(f"{USER_PATH}/allergies", json={"uid": UID, "allergy_flags": [], "updated": True})
    scripted_client.replace_allergies(uid=UID, confirmed=[], intolerances=[], severity={})
    assert scripted.calls[-1].json() == {"confirmed": [], "intolerances": [], "severity": {}}


def test_delete_user_true_on_204(scripted_client, scripted):
    scripted.delete(USER_PATH, status=204)
    assert scripted_client.delete_user(uid=UID) is True
    assert _sent(scripted).method == "DELETE"


def test_delete_user_false_when_the_agent_has_no_such_user(scripted_client, scripted):
    scripted.delete(USER_PATH, status=404, json={"detail": "User not found", "code": "USER_NOT_FOUND"})
    assert scripted_client.delete_user(uid=UID) is False


def test_delete_user_false_with_the_real_agents_header_only_404(scripted_client, scripted):
    # The real Agent puts the code in X-Error-Code, not in the body, for its 404s.
    scripted.delete(
        USER_PATH,
        status=404,
        json={"detail": "User not found"},
        headers={"X-Error-Code": "USER_NOT_FOUND"},
    )
    assert scripted_client.delete_user(uid=UID) is False


def test_delete_user_raises_on_a_bare_404(scripted_client, scripted):
    # "Not Found" from a wrong base URL must not count as "already deleted".
    scripted.delete(USER_PATH, status=404, json={"detail": "Not Found"})
    with pytest.raises(AgentPermanentError) as info:
        scripted_client.delete_user(uid=UID)
    assert type(info.value) is AgentPermanentError


def test_get_interactions_query_parameters(scripted_client, scripted):
    page = {"interactions": [], "total": 0, "limit": 5, "offset": 10}
    scripted.get(
        f"{USER_PATH}/interactions",
        json=page,
        query={"limit": "5", "offset": "10", "include_response": "true"},
    )
    assert scripted_client.get_interactions(uid=UID, limit=5, offset=10, include_response=True) == page
    _sent(scripted)


def test_get_interactions_defaults(scripted_client, scripted):
    scripted.get(
        f"{USER_PATH}/interactions",
        json={"interactions": [], "total": 0, "limit": 20, "offset": 0},
        query={"limit": "20", "offset": "0", "include_response": "false"},
    )
    assert scripted_client.get_interactions(uid=UID)["limit"] == 20
    sent = scripted.calls[0]
    assert sent.method == "GET"
    assert sent.query == {"limit": ["20"], "offset": ["0"], "include_response": ["false"]}


def test_clear_interactions(scripted_client, scripted):
    scripted.delete(f"{USER_PATH}/interactions", status=204)
    assert scripted_client.clear_interactions(uid=UID) is None
    sent = scripted.calls[0]
    assert (sent.method, sent.path, sent.query, sent.headers["X-Service-Token"]) == (
        "DELETE",
        f"{USER_PATH}/interactions",
        {},
        TOKEN,
    )


def test_clear_interactions_of_an_unknown_user_raises(scripted_client, scripted):
    scripted.delete(
        f"{USER_PATH}/interactions",
        status=404,
        json={"detail": "User not found", "code": "USER_NOT_FOUND"},
    )
    with pytest.raises(AgentUserNotFound):
        scripted_client.clear_interactions(uid=UID)


def test_uid_is_quoted_into_one_path_segment(scripted_client, scripted):
    scripted.get("/users/..%2Fadmin", json={})
    scripted_client.get_user(uid="../admin")
    assert scripted.calls[0].path == "/users/..%2Fadmin"


@pytest.mark.parametrize("uid", ["", "   "])
def test_empty_uid_fails_before_any_request(scripted_client, scripted, uid):
    with pytest.raises(AgentMissingUserId):
        scripted_client.get_user(uid=uid)
    assert len(scripted.calls) == 0


# --- error mapping ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "code"),
    [
        (
            500,
            {"detail": "Internal server error", "code": "AGENT_UNAVAILABLE"},
            {},
            AgentUnavailable,
            "AGENT_UNAVAILABLE",
        ),
        (502, "<html>Bad Gateway</html>", {}, AgentUnavailable, "AGENT_UNAVAILABLE"),
        (503, "", {}, AgentUnavailable, "AGENT_UNAVAILABLE"),
        (504, {"detail": "x", "code": "INVALID_PAYLOAD"}, {}, AgentUnavailable, "INVALID_PAYLOAD"),
        (429, {"detail": "Too many requests"}, {}, AgentUnavailable, "AGENT_UNAVAILABLE"),
        (409, {"detail": "busy", "code": "AGENT_UNAVAILABLE"}, {}, AgentUnavailable, "AGENT_UNAVAILABLE"),
        (401, {"detail": "Invalid service token"}, {}, AgentAuthError, "INVALID_SERVICE_TOKEN"),
        (
            401,
            {"detail": "Invalid service token", "code": "INVALID_SERVICE_TOKEN"},
            {},
            AgentAuthError,
            "INVALID_SERVICE_TOKEN",
        ),
        (
            422,
            {"detail": [{"loc": ["body", "severity"], "msg": "field required"}]},
            {},
            AgentInvalidPayload,
            "INVALID_PAYLOAD",
        ),
        (
            400,
            {"detail": "X-User-ID missing", "code": "MISSING_USER_ID"},
            {},
            AgentMissingUserId,
            "MISSING_USER_ID",
        ),
        (400, {"detail": "bad request"}, {}, AgentPermanentError, "AGENT_REJECTED"),
        (
            404,
            {"detail": "User not found", "code": "USER_NOT_FOUND"},
            {},
            AgentUserNotFound,
            "USER_NOT_FOUND",
        ),
        (
            404,
            {"detail": "User not found"},
            {"X-Error-Code": "USER_NOT_FOUND"},
            AgentUserNotFound,
            "USER_NOT_FOUND",
        ),
        (404, {"detail": "User not found"}, {}, AgentUserNotFound, "USER_NOT_FOUND"),
        (404, {"detail": "Not Found"}, {}, AgentPermanentError, "AGENT_REJECTED"),
        (404, "not json", {}, AgentPermanentError, "AGENT_REJECTED"),
        (403, {"detail": "Forbidden"}, {}, AgentPermanentError, "AGENT_REJECTED"),
        (
            302,
            "",
            {"Location": "https://agent.test/users/x"},
            AgentPermanentError,
            "UNEXPECTED_REDIRECT",
        ),
    ],
)
def test_error_mapping(scripted_client, scripted, status, body, headers, expected, code):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    scripted.patch(f"{USER_PATH}/allergies", status=status, headers=headers, **kwargs)
    with pytest.raises(AgentError) as info:
        scripted_client.replace_allergies(uid=UID, confirmed=[], intolerances=[], severity={})
    error = info.value
    assert type(error) is expected
    assert error.status == status
    assert error.code == code
    assert error.transient is issubclass(expected, AgentTransientError)
    assert error.method == "PATCH"
    assert error.path == f"/users/{UID}/allergies"
    assert len(scripted.calls) == 1  # a redirect is not followed


def test_validation_detail_list_is_kept_readable(scripted_client, scripted):
    detail = [{"loc": ["body", "confirmed"], "msg": "value is not a valid list"}]
    scripted.patch(USER_PATH, status=422, json={"detail": detail})
    with pytest.raises(AgentInvalidPayload) as info:
        scripted_client.update_preferences(uid=UID, preferences={})
    assert "value is not a valid list" in info.value.detail
    assert "value is not a valid list" in str(info.value)


def test_retry_after_is_exposed_for_the_retry_policy(scripted_client, scripted):
    scripted.get(USER_PATH, status=429, json={"detail": "slow down"}, headers={"Retry-After": "7"})
    with pytest.raises(AgentUnavailable) as info:
        scripted_client.get_user(uid=UID)
    assert info.value.retry_after == 7.0


def test_non_json_success_is_transient(scripted_client, scripted):
    scripted.get(USER_PATH, status=200, body="<html>captive portal</html>")
    with pytest.raises(AgentUnavailable) as info:
        scripted_client.get_user(uid=UID)
    assert info.value.code == "INVALID_RESPONSE"


@pytest.mark.parametrize(
    ("method", "failure", "expected", "exact", "code"),
    [
        # A write that reached the Agent without an answer: its outcome is unknown.
        ("POST", "stall", AgentTimeout, AgentResponseTimeout, "AGENT_TIMEOUT"),
        ("POST", "close", AgentConnectionError, AgentConnectionLost, "AGENT_CONNECTION_LOST"),
        # A write that never left: nothing is unknown.
        ("POST", "refused", AgentConnectionError, AgentConnectionError, "AGENT_CONNECTION_ERROR"),
        # A read changes nothing, whatever became of it.
        ("GET", "stall", AgentTimeout, AgentTimeout, "AGENT_TIMEOUT"),
        ("GET", "close", AgentConnectionError, AgentConnectionError, "AGENT_CONNECTION_ERROR"),
    ],
)
def test_network_failures_are_transient(scripted, method, failure, expected, exact, code):
    if failure == "refused":
        base_url = refused_base_url()
    else:
        base_url = scripted.base_url
        scripted.add(method, USER_PATH, action=failure)
    client = AgentClient(base_url=base_url, service_token=TOKEN, timeout=SHORT_TIMEOUT)
    call = client.create_user if method == "POST" else client.get_user
    with pytest.raises(expected) as info:
        call(uid=UID)
    assert type(info.value) is exact
    assert info.value.code == code
    assert info.value.transient is True
    assert info.value.status is None
    assert info.value.__cause__ is not None
    assert len(scripted.calls) == (0 if failure == "refused" else 1)


def test_bad_base_url_is_permanent():
    client = AgentClient(base_url="agent-without-scheme", service_token=TOKEN, timeout=1)
    with pytest.raises(AgentPermanentError) as info:
        client.get_user(uid=UID)
    assert info.value.code == "INVALID_AGENT_URL"
    assert info.value.transient is False


def test_hierarchy_flags():
    for cls in (AgentUnavailable, AgentTimeout, AgentConnectionError):
        assert issubclass(cls, AgentTransientError) and cls.transient is True
    for cls in (AgentUserNotFound, AgentAuthError, AgentInvalidPayload, AgentMissingUserId):
        assert issubclass(cls, AgentPermanentError) and cls.transient is False
    assert issubclass(AgentTransientError, AgentError)
    assert issubclass(AgentPermanentError, AgentError)


# --- the token never leaks --------------------------------------------------------


def _all_text(error: BaseException) -> str:
    return str(error) + repr(error) + "".join(traceback.format_exception(error))


def test_token_echoed_by_the_agent_is_scrubbed(scripted_client, scripted):
    scripted.get(
        USER_PATH,
        status=401,
        json={"detail": f"token {TOKEN} is not valid", "code": f"BAD_{TOKEN}"},
    )
    with pytest.raises(AgentAuthError) as info:
        scripted_client.get_user(uid=UID)
    assert TOKEN not in _all_text(info.value)
    assert TOKEN not in info.value.detail and TOKEN not in info.value.code
    assert "[redacted]" in info.value.detail


def test_token_echoed_in_a_non_json_5xx_is_scrubbed(scripted_client, scripted):
    scripted.get(USER_PATH, status=500, body=f"upstream said X-Service-Token: {TOKEN}")
    with pytest.raises(AgentUnavailable) as info:
        scripted_client.get_user(uid=UID)
    assert TOKEN not in _all_text(info.value)


@pytest.mark.parametrize("failure", ["refused", "close", "stall"])
def test_token_not_in_network_error_text(scripted, failure):
    if failure == "refused":
        base_url = refused_base_url()
    else:
        base_url = scripted.base_url
        scripted.get(USER_PATH, action=failure)
    client = AgentClient(base_url=base_url, service_token=TOKEN, timeout=SHORT_TIMEOUT)
    with pytest.raises(AgentTransientError) as info:
        client.get_user(uid=UID)
    assert isinstance(info.value, AgentConnectionError | AgentTimeout)
    assert TOKEN not in _all_text(info.value)


def test_a_malformed_token_is_a_permanent_error_that_does_not_quote_it(scripted):
    client = AgentClient(base_url=scripted.base_url, service_token=TOKEN + "\n", timeout=1)
    with pytest.raises(AgentPermanentError) as info:
        client.get_user(uid=UID)
    assert info.value.code == "INVALID_SERVICE_TOKEN_SETTING"
    assert TOKEN not in _all_text(info.value)
    assert scripted.calls == []  # nothing was sent


def test_token_never_logged(scripted_client, scripted, caplog):
    caplog.set_level(logging.DEBUG)
    scripted.get(USER_PATH, json={"uid": UID})
    scripted.delete(USER_PATH, status=500, body="boom")
    scripted_client.get_user(uid=UID)
    with pytest.raises(AgentUnavailable):
        scripted_client.delete_user(uid=UID)
    assert caplog.records, "expected debug lines from the client"
    assert TOKEN not in caplog.text


# --- trace context and metrics -----------------------------------------------------------


def test_each_call_sends_a_child_span_of_the_current_trace(scripted_client, scripted) -> None:
    from project import tracing

    scripted.get(USER_PATH, json={"uid": UID})
    scripted.get(USER_PATH, json={"uid": UID})
    parent = tracing.TraceContext.new()

    with tracing.span("deliver", kind=tracing.SpanKind.CONSUMER, parent=parent) as delivery:
        scripted_client.get_user(uid=UID)
        scripted_client.get_user(uid=UID)

    sent = [tracing.TraceContext.parse(call.headers["traceparent"]) for call in scripted.calls]
    assert [context.trace_id for context in sent] == [parent.trace_id] * 2
    assert len({context.span_id for context in sent} | {delivery.span_id}) == 3  # a new span per call


def test_calls_are_timed_by_endpoint_template_and_status(scripted_client, scripted) -> None:
    from prometheus_client import REGISTRY

    def count(endpoint: str, status: str) -> float:
        labels = {"endpoint": endpoint, "status": status}
        return REGISTRY.get_sample_value("kairos_agent_request_duration_seconds_count", labels) or 0.0

    scripted.patch(f"{USER_PATH}/allergies", json={"uid": UID, "allergy_flags": [], "updated": True})
    scripted.get(USER_PATH, action="close")
    before = (count("PATCH /users/{uid}/allergies", "200"), count("GET /users/{uid}", "connection_error"))

    scripted_client.replace_allergies(uid=UID, confirmed=[], intolerances=[], severity={})
    with pytest.raises(AgentConnectionError):
        scripted_client.get_user(uid=UID)

    after = (count("PATCH /users/{uid}/allergies", "200"), count("GET /users/{uid}", "connection_error"))
    assert after == (before[0] + 1, before[1] + 1)


# --- the environment, read once ---------------------------------------------------------------


def test_the_environments_proxy_carries_the_calls(scripted, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", scripted.base_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = AgentClient(base_url=BASE, service_token=TOKEN, timeout=10)
    scripted.get(USER_PATH, json={"uid": UID})

    assert client.get_user(uid=UID) == {"uid": UID}  # answered by the proxy, the scripted server
    assert scripted.calls[-1].headers["Host"] == "agent.test"
    assert client.proxy == scripted.base_url


def test_the_environments_ca_bundle_verifies_the_agent(monkeypatch, tmp_path):
    bundle = tmp_path / "kairos-test.pem"
    bundle.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    client = AgentClient(base_url="https://agent.test", service_token=TOKEN, timeout=10)
    assert client.verify == str(bundle)
    assert client._pool.connection_pool_kw["ca_certs"] == str(bundle)
    assert client._pool.connection_pool_kw["cert_reqs"] == "CERT_REQUIRED"


def test_no_proxy_for_the_agent_is_kept(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("NO_PROXY", "agent.test")

    client = AgentClient(base_url=BASE, service_token=TOKEN, timeout=10)

    assert client.proxy is None
    assert not isinstance(client._pool, urllib3.ProxyManager)
