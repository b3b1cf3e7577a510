"""Unit tests of AgentClient against mocked HTTP (``responses``).

They pin what goes on the wire for each Agent endpoint and how every kind of
failure maps onto the typed errors the consumer's retry policy relies on.
No database, no Django needed (except the one ``from_settings`` test).
"""

from __future__ import annotations

import json
import logging
import traceback
import uuid

import pytest
import requests
import responses
from responses import matchers

from agent_bridge.agent_client import (
    AgentAuthError,
    AgentClient,
    AgentConnectionError,
    AgentError,
    AgentInvalidPayload,
    AgentMissingUserId,
    AgentPermanentError,
    AgentTimeout,
    AgentTransientError,
    AgentUnavailable,
    AgentUserNotFound,
)

BASE = "http://agent.test"
TOKEN = "s3cret-service-token-0123456789abcdef"
UID = "550e8400-e29b-41d4-a716-446655440000"
USER_URL = f"{BASE}/users/{UID}"
TOKEN_HEADER = matchers.header_matcher({"X-Service-Token": TOKEN})


@pytest.fixture
def client() -> AgentClient:
    return AgentClient(base_url=f"{BASE}/", service_token=TOKEN, timeout=10)


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def _sent_json(rsps: responses.RequestsMock) -> dict:
    return json.loads(rsps.calls[-1].request.body)


# --- construction -----------------------------------------------------------


def test_timeout_caps_connect_part_and_keeps_read_part():
    client = AgentClient(base_url=BASE, service_token=TOKEN, timeout=10)
    assert client.timeout == (3.05, 10.0)
    short = AgentClient(base_url=BASE, service_token=TOKEN, timeout=2)
    assert short.timeout == (2.0, 2.0)


def test_repr_does_not_show_the_token(client):
    assert TOKEN not in repr(client)


def test_uses_the_given_session_without_changing_its_headers(mocked):
    session = requests.Session()
    before = dict(session.headers)
    mocked.get(USER_URL, json={"uid": UID}, match=[TOKEN_HEADER])
    client = AgentClient(base_url=BASE, service_token=TOKEN, timeout=5, session=session)
    assert client.get_user(uid=UID) == {"uid": UID}
    assert dict(session.headers) == before


def test_a_call_bypasses_session_request_and_sends_the_same_request(client, mocked, monkeypatch):
    """The client prepares its request and hands it to the session's adapter: Session.request's
    per-call merging (headers, cookies, hooks, environment, redirects) is not paid; what goes on
    the wire is unchanged, the session's default headers included."""

    def refused(*args, **kwargs):
        raise AssertionError("Session.request/send was used")

    monkeypatch.setattr(requests.Session, "request", refused)
    monkeypatch.setattr(requests.Session, "send", refused)
    mocked.patch(f"{USER_URL}/allergies", json={"uid": UID}, match=[TOKEN_HEADER])
    client.replace_allergies(uid=UID, confirmed=["peanut"], intolerances=[], severity={"peanut": "severe"})
    sent = mocked.calls[-1].request
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["User-Agent"] == requests.utils.default_user_agent()
    assert sent.headers["Content-Type"] == "application/json"
    assert "traceparent" in sent.headers
    assert json.loads(sent.body) == {"confirmed": ["peanut"], "intolerances": [], "severity": {"peanut": "severe"}}


def test_the_agents_cookies_are_never_sent_back(client, mocked):
    # The service token is the Agent's only credential: a cookie it sets is not kept.
    mocked.get(USER_URL, json={"uid": UID}, headers={"Set-Cookie": "sid=abc; Path=/"})
    mocked.get(USER_URL, json={"uid": UID})
    client.get_user(uid=UID)
    client.get_user(uid=UID)
    assert "Cookie" not in mocked.calls[-1].request.headers


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


def test_create_user_sends_the_full_default_payload(client, mocked):
    mocked.post(
        USER_URL,
        status=201,
        json={"uid": UID, "created": True},
        match=[TOKEN_HEADER],
    )
    assert client.create_user(uid=UID) == {"uid": UID, "created": True}
    assert _sent_json(mocked) == {
        "preferences": {},
        "allergies": {},
        "dietary_flags": [],
        "vibe_tags": [],
        "allergy_flags": [],
    }


def test_create_user_with_values_and_existing_user(client, mocked):
    mocked.post(USER_URL, status=200, json={"uid": UID, "created": False})
    allergies = {
        "confirmed": ["peanuts"],
        "intolerances": [],
        "severity": {"peanuts": "anaphylactic"},
    }
    result = client.create_user(
        uid=uuid.UUID(UID),
        preferences={"vibes": ["quiet"]},
        allergies=allergies,
        dietary_flags=["vegan"],
        vibe_tags=["quiet"],
        allergy_flags=["peanuts"],
    )
    assert result == {"uid": UID, "created": False}
    assert _sent_json(mocked) == {
        "preferences": {"vibes": ["quiet"]},
        "allergies": allergies,
        "dietary_flags": ["vegan"],
        "vibe_tags": ["quiet"],
        "allergy_flags": ["peanuts"],
    }


def test_get_user(client, mocked):
    profile = {"uid": UID, "preferences": {}, "allergy_flags": []}
    mocked.get(USER_URL, json=profile, match=[TOKEN_HEADER])
    assert client.get_user(uid=UID) == profile
    assert mocked.calls[0].request.body is None


def test_update_preferences_wraps_the_delta(client, mocked):
    mocked.patch(
        USER_URL,
        json={"uid": UID, "updated": True},
        match=[TOKEN_HEADER, matchers.json_params_matcher({"preferences": {"vibes": ["x"]}})],
    )
    assert client.update_preferences(uid=UID, preferences={"vibes": ["x"]}) == {
        "uid": UID,
        "updated": True,
    }


def test_replace_allergies_sends_the_full_state(client, mocked):
    body = {
        "confirmed": ["peanuts", "shellfish"],
        "intolerances": ["lactose"],
        "severity": {"peanuts": "anaphylactic", "shellfish": "severe", "lactose": "intolerance"},
    }
    answer = {"uid": UID, "allergy_flags": ["lactose", "peanuts", "shellfish"], "updated": True}
    mocked.patch(
        f"{USER_URL}/allergies",
        json=answer,
        match=[TOKEN_HEADER, matchers.json_params_matcher(body)],
    )
    assert client.replace_allergies(uid=UID, **body) == answer


def test_replace_allergies_with_an_empty_profile(client, mocked):
    mocked.patch(f"{USER_URL}/allergies", json={"uid": UID, "allergy_flags": [], "updated": True})
    client.replace_allergies(uid=UID, confirmed=[], intolerances=[], severity={})
    assert _sent_json(mocked) == {"confirmed": [], "intolerances": [], "severity": {}}


def test_delete_user_true_on_204(client, mocked):
    mocked.delete(USER_URL, status=204, match=[TOKEN_HEADER])
    assert client.delete_user(uid=UID) is True


def test_delete_user_false_when_the_agent_has_no_such_user(client, mocked):
    mocked.delete(USER_URL, status=404, json={"detail": "User not found", "code": "USER_NOT_FOUND"})
    assert client.delete_user(uid=UID) is False


def test_delete_user_false_with_the_real_agents_header_only_404(client, mocked):
    # The real Agent puts the code in X-Error-Code, not in the body, for its 404s.
    mocked.delete(
        USER_URL,
        status=404,
        json={"detail": "User not found"},
        headers={"X-Error-Code": "USER_NOT_FOUND"},
    )
    assert client.delete_user(uid=UID) is False


def test_delete_user_raises_on_a_bare_404(client, mocked):
    # "Not Found" from a wrong base URL must not count as "already deleted".
    mocked.delete(USER_URL, status=404, json={"detail": "Not Found"})
    with pytest.raises(AgentPermanentError) as info:
        client.delete_user(uid=UID)
    assert type(info.value) is AgentPermanentError


def test_get_interactions_query_parameters(client, mocked):
    page = {"interactions": [], "total": 0, "limit": 5, "offset": 10}
    mocked.get(
        f"{USER_URL}/interactions",
        json=page,
        match=[
            TOKEN_HEADER,
            matchers.query_param_matcher({"limit": "5", "offset": "10", "include_response": "true"}),
        ],
    )
    assert client.get_interactions(uid=UID, limit=5, offset=10, include_response=True) == page


def test_get_interactions_defaults(client, mocked):
    mocked.get(
        f"{USER_URL}/interactions",
        json={"interactions": [], "total": 0, "limit": 20, "offset": 0},
        match=[matchers.query_param_matcher({"limit": "20", "offset": "0", "include_response": "false"})],
    )
    assert client.get_interactions(uid=UID)["limit"] == 20
    sent = mocked.calls[0].request
    assert sent.method == "GET" and "limit=20" in sent.url and "include_response=false" in sent.url


def test_clear_interactions(client, mocked):
    mocked.delete(f"{USER_URL}/interactions", status=204, match=[TOKEN_HEADER])
    assert client.clear_interactions(uid=UID) is None
    sent = mocked.calls[0].request
    assert (sent.method, sent.url, sent.headers["X-Service-Token"]) == ("DELETE", f"{USER_URL}/interactions", TOKEN)


def test_clear_interactions_of_an_unknown_user_raises(client, mocked):
    mocked.delete(
        f"{USER_URL}/interactions",
        status=404,
        json={"detail": "User not found", "code": "USER_NOT_FOUND"},
    )
    with pytest.raises(AgentUserNotFound):
        client.clear_interactions(uid=UID)


def test_uid_is_quoted_into_one_path_segment(client, mocked):
    mocked.get(f"{BASE}/users/..%2Fadmin", json={})
    client.get_user(uid="../admin")


@pytest.mark.parametrize("uid", ["", "   "])
def test_empty_uid_fails_before_any_request(client, mocked, uid):
    mocked.assert_all_requests_are_fired = False
    with pytest.raises(AgentMissingUserId):
        client.get_user(uid=uid)
    assert len(mocked.calls) == 0


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
def test_error_mapping(client, mocked, status, body, headers, expected, code):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    mocked.patch(f"{USER_URL}/allergies", status=status, headers=headers, **kwargs)
    with pytest.raises(AgentError) as info:
        client.replace_allergies(uid=UID, confirmed=[], intolerances=[], severity={})
    error = info.value
    assert type(error) is expected
    assert error.status == status
    assert error.code == code
    assert error.transient is issubclass(expected, AgentTransientError)
    assert error.method == "PATCH"
    assert error.path == f"/users/{UID}/allergies"


def test_validation_detail_list_is_kept_readable(client, mocked):
    detail = [{"loc": ["body", "confirmed"], "msg": "value is not a valid list"}]
    mocked.patch(USER_URL, status=422, json={"detail": detail})
    with pytest.raises(AgentInvalidPayload) as info:
        client.update_preferences(uid=UID, preferences={})
    assert "value is not a valid list" in info.value.detail
    assert "value is not a valid list" in str(info.value)


def test_retry_after_is_exposed_for_the_retry_policy(client, mocked):
    mocked.get(USER_URL, status=429, json={"detail": "slow down"}, headers={"Retry-After": "7"})
    with pytest.raises(AgentUnavailable) as info:
        client.get_user(uid=UID)
    assert info.value.retry_after == 7.0


def test_non_json_success_is_transient(client, mocked):
    mocked.get(USER_URL, status=200, body="<html>captive portal</html>")
    with pytest.raises(AgentUnavailable) as info:
        client.get_user(uid=UID)
    assert info.value.code == "INVALID_RESPONSE"


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (requests.exceptions.ReadTimeout("read timed out"), AgentTimeout),
        (requests.exceptions.ConnectTimeout("connect timed out"), AgentTimeout),
        (requests.exceptions.ConnectionError("connection refused"), AgentConnectionError),
        (requests.exceptions.ChunkedEncodingError("connection broken"), AgentConnectionError),
    ],
)
def test_network_failures_are_transient(client, mocked, raised, expected):
    mocked.post(USER_URL, body=raised)
    with pytest.raises(expected) as info:
        client.create_user(uid=UID)
    assert info.value.transient is True
    assert info.value.status is None
    assert info.value.__cause__ is raised


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


def test_token_echoed_by_the_agent_is_scrubbed(client, mocked):
    mocked.get(
        USER_URL,
        status=401,
        json={"detail": f"token {TOKEN} is not valid", "code": f"BAD_{TOKEN}"},
    )
    with pytest.raises(AgentAuthError) as info:
        client.get_user(uid=UID)
    assert TOKEN not in _all_text(info.value)
    assert TOKEN not in info.value.detail and TOKEN not in info.value.code
    assert "[redacted]" in info.value.detail


def test_token_echoed_in_a_non_json_5xx_is_scrubbed(client, mocked):
    mocked.get(USER_URL, status=500, body=f"upstream said X-Service-Token: {TOKEN}")
    with pytest.raises(AgentUnavailable) as info:
        client.get_user(uid=UID)
    assert TOKEN not in _all_text(info.value)


def test_token_not_in_network_error_text(client, mocked):
    mocked.get(USER_URL, body=requests.exceptions.ConnectionError("refused"))
    with pytest.raises(AgentConnectionError) as info:
        client.get_user(uid=UID)
    assert TOKEN not in _all_text(info.value)


def test_malformed_token_does_not_leak_through_requests_message():
    bad = TOKEN + "\n"
    client = AgentClient(base_url=BASE, service_token=bad, timeout=1)
    with pytest.raises(AgentPermanentError) as info:
        client.get_user(uid=UID)
    assert TOKEN not in _all_text(info.value)


def test_token_never_logged(client, mocked, caplog):
    caplog.set_level(logging.DEBUG)
    mocked.get(USER_URL, json={"uid": UID})
    mocked.delete(USER_URL, status=500, body="boom")
    client.get_user(uid=UID)
    with pytest.raises(AgentUnavailable):
        client.delete_user(uid=UID)
    assert caplog.records, "expected debug lines from the client"
    assert TOKEN not in caplog.text


# --- trace context and metrics -----------------------------------------------------------


def test_each_call_sends_a_child_span_of_the_current_trace(client, mocked) -> None:
    from project import tracing

    mocked.get(USER_URL, json={"uid": UID})
    mocked.get(USER_URL, json={"uid": UID})
    parent = tracing.TraceContext.new()

    with tracing.span("deliver", kind=tracing.SpanKind.CONSUMER, parent=parent) as delivery:
        client.get_user(uid=UID)
        client.get_user(uid=UID)

    sent = [tracing.TraceContext.parse(call.request.headers["traceparent"]) for call in mocked.calls]
    assert [context.trace_id for context in sent] == [parent.trace_id] * 2
    assert len({context.span_id for context in sent} | {delivery.span_id}) == 3  # a new span per call


def test_calls_are_timed_by_endpoint_template_and_status(client, mocked) -> None:
    from prometheus_client import REGISTRY

    def count(endpoint: str, status: str) -> float:
        labels = {"endpoint": endpoint, "status": status}
        return REGISTRY.get_sample_value("kairos_agent_request_duration_seconds_count", labels) or 0.0

    mocked.patch(f"{USER_URL}/allergies", json={"uid": UID, "allergy_flags": [], "updated": True})
    mocked.get(USER_URL, body=requests.ConnectionError("refused"))
    before = (count("PATCH /users/{uid}/allergies", "200"), count("GET /users/{uid}", "connection_error"))

    client.replace_allergies(uid=UID, confirmed=[], intolerances=[], severity={})
    with pytest.raises(AgentConnectionError):
        client.get_user(uid=UID)

    after = (count("PATCH /users/{uid}/allergies", "200"), count("GET /users/{uid}", "connection_error"))
    assert after == (before[0] + 1, before[1] + 1)


# --- the environment, read once ---------------------------------------------------------------


def test_the_proxy_and_ca_settings_of_the_environment_are_read_once_at_construction(monkeypatch):
    """requests would scan the environment (proxies, CA bundle, ~/.netrc) on every call: the client
    reads it for the Agent's URL when it is built, and keeps it."""
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/kairos-test.pem")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = AgentClient(base_url=BASE, service_token=TOKEN, timeout=10)
    reads = []
    monkeypatch.setattr(requests.sessions, "get_environ_proxies",
                        lambda *args, **kwargs: reads.append(args) or {})

    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, USER_URL, json={"uid": UID})
        client.get_user(uid=UID)
        client.get_user(uid=UID)

    assert reads == []
    assert client._session.proxies["http"] == "http://proxy.test:3128"
    assert client._session.verify == "/etc/ssl/kairos-test.pem"


def test_no_proxy_for_the_agent_is_kept(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("NO_PROXY", "agent.test")

    client = AgentClient(base_url=BASE, service_token=TOKEN, timeout=10)

    assert "http" not in client._session.proxies
