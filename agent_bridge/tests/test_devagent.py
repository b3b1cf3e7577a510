"""Tests of the local Agent double over real HTTP, and of AgentClient against it.

The double stands in for the Agent in development and in the end-to-end
tests, so it must honour the Agent's contract (seed 000) and its fault
controls must really behave like a slow, failing or absent Agent. The last
section runs AgentClient against it, which proves client and double agree.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.client import HTTPConnection, HTTPResponse
from pathlib import Path

import pytest
import requests

from agent_bridge.agent_client import (
    AgentAuthError,
    AgentClient,
    AgentConnectionError,
    AgentConnectionLost,
    AgentInvalidPayload,
    AgentOutcomeUnknown,
    AgentResponseTimeout,
    AgentTimeout,
    AgentUnavailable,
    AgentUserNotFound,
)
from agent_bridge.devagent import LISTENING_LINE_RE, DevAgentServer
from agent_bridge.devagent.server import _Server
from tests.devagent_control import DevAgentControl

TOKEN = "devagent-test-token-0123456789abcdef"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server():
    with DevAgentServer(token=TOKEN) as running:
        yield running


@pytest.fixture
def control(server):
    ctl = DevAgentControl(server.control_url)
    ctl.reset()
    yield ctl
    ctl.reset()
    ctl.close()


@pytest.fixture
def http(server, control):
    """Calls the main port with the service token; ``token=None`` omits the header."""
    session = requests.Session()

    def call(method: str, path: str, *, token: str | None = TOKEN, **kwargs) -> requests.Response:
        headers = {} if token is None else {"X-Service-Token": token}
        return session.request(method, f"{server.base_url}{path}", headers=headers, timeout=5, **kwargs)

    yield call
    session.close()


@pytest.fixture
def client(server, control):
    with AgentClient(base_url=server.base_url, service_token=TOKEN, timeout=2) as agent:
        yield agent


def new_uid() -> str:
    return str(uuid.uuid4())


def make_user(http, uid: str | None = None, **body) -> str:
    uid = uid or new_uid()
    assert http("POST", f"/users/{uid}", json=body).status_code == 201
    return uid


# --- the contract -------------------------------------------------------------


def test_create_is_idempotent(http, control):
    uid = new_uid()
    first = http("POST", f"/users/{uid}", json={})
    second = http("POST", f"/users/{uid}", json={"preferences": {"vibes": ["loud"]}})
    assert (first.status_code, first.json()) == (201, {"uid": uid, "created": True})
    assert (second.status_code, second.json()) == (200, {"uid": uid, "created": False})
    assert control.user(uid)["preferences"] == {}, "a repeated create must not overwrite"


def test_create_stores_the_payload_and_derives_flags(http):
    uid = new_uid()
    body = {
        "preferences": {"dietary": ["vegan"]},
        "allergies": {
            "confirmed": ["peanuts"],
            "intolerances": ["lactose"],
            "severity": {"peanuts": "anaphylactic", "lactose": "intolerance"},
        },
        "dietary_flags": ["vegan"],
        "vibe_tags": ["quiet"],
    }
    make_user(http, uid, **body)
    profile = http("GET", f"/users/{uid}").json()
    assert profile["uid"] == uid
    assert profile["preferences"] == {"dietary": ["vegan"]}
    assert profile["allergies"] == body["allergies"]
    assert profile["allergy_flags"] == ["lactose", "peanuts"]
    assert profile["dietary_flags"] == ["vegan"]
    assert profile["vibe_tags"] == ["quiet"]


def test_uid_is_canonicalised(http):
    uid = new_uid()
    make_user(http, uid.upper())
    assert http("GET", f"/users/{uid}").status_code == 200


def test_concurrent_creates_create_once(http):
    uid = new_uid()
    answers: list[int] = []
    lock = threading.Lock()

    def create() -> None:
        status = http("POST", f"/users/{uid}", json={}).status_code
        with lock:
            answers.append(status)

    threads = [threading.Thread(target=create) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [200] * 11 + [201]


def test_preferences_patch_deep_merges(http, control):
    uid = make_user(http, preferences={"vibes": ["quiet"], "location_bias": {"area": "Koramangala"}, "x": 1})
    response = http(
        "PATCH",
        f"/users/{uid}",
        json={"preferences": {"vibes": ["quiet", "romantic"], "location_bias": {"radius_km": 5}, "x": 2}},
    )
    assert response.status_code == 200
    assert response.json() == {"uid": uid, "updated": True}
    assert control.user(uid)["preferences"] == {
        "vibes": ["quiet", "romantic"],
        "location_bias": {"area": "Koramangala", "radius_km": 5},
        "x": 2,
    }


def test_preferences_patch_leaves_allergies_alone(http, control):
    allergies = {"confirmed": ["peanuts"], "intolerances": [], "severity": {"peanuts": "severe"}}
    uid = make_user(http, allergies=allergies)
    http("PATCH", f"/users/{uid}", json={"preferences": {"allergies": ["ignored"]}})
    assert control.user(uid)["allergies"] == allergies
    assert control.user(uid)["allergy_flags"] == ["peanuts"]


def test_allergies_are_fully_replaced(http, control):
    uid = make_user(http)
    first = {
        "confirmed": ["peanuts", "shellfish"],
        "intolerances": ["lactose"],
        "severity": {"peanuts": "anaphylactic", "shellfish": "severe", "lactose": "intolerance"},
    }
    response = http("PATCH", f"/users/{uid}/allergies", json=first)
    assert response.status_code == 200
    assert response.json() == {"uid": uid, "allergy_flags": ["lactose", "peanuts", "shellfish"], "updated": True}

    second = {"confirmed": ["sesame"], "intolerances": [], "severity": {"sesame": "moderate"}}
    response = http("PATCH", f"/users/{uid}/allergies", json=second)
    assert response.json()["allergy_flags"] == ["sesame"]
    stored = control.user(uid)
    assert stored["allergies"] == second, "a replace must drop allergens no longer listed"
    assert stored["allergy_flags"] == ["sesame"]

    cleared = http("PATCH", f"/users/{uid}/allergies", json={"confirmed": [], "intolerances": [], "severity": {}})
    assert cleared.json()["allergy_flags"] == []


def test_delete_user_removes_user_and_interactions(http, control):
    uid = make_user(http)
    control.add_interaction(uid, {"user_query": "hello"})
    response = http("DELETE", f"/users/{uid}")
    assert response.status_code == 204
    assert response.content == b""
    assert control.user(uid) is None
    again = http("DELETE", f"/users/{uid}")
    assert again.status_code == 404
    assert again.json() == {"detail": "User not found", "code": "USER_NOT_FOUND"}


def test_interactions_pagination_newest_first(http, control):
    uid = make_user(http)
    for minute in range(5):
        control.add_interaction(
            uid,
            {
                "user_query": f"q{minute}",
                "agent_response": {"n": minute},
                "restaurant_ids": [minute],
                "created_at": f"2026-02-27T10:0{minute}:00Z",
            },
        )
    page = http("GET", f"/users/{uid}/interactions", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 5
    assert (page["limit"], page["offset"]) == (2, 1)
    assert [item["user_query"] for item in page["interactions"]] == ["q3", "q2"]
    assert all(item["agent_response"] == {} for item in page["interactions"])
    assert page["interactions"][0]["uid"] == uid

    full = http("GET", f"/users/{uid}/interactions", params={"include_response": "true"}).json()
    assert (full["limit"], full["offset"]) == (20, 0)
    assert [item["agent_response"] for item in full["interactions"]] == [{"n": n} for n in (4, 3, 2, 1, 0)]
    assert control.user(uid)["interaction_count"] == 5


def test_clear_interactions_keeps_the_user(http, control):
    uid = make_user(http)
    control.add_interaction(uid, {"user_query": "hello"})
    assert http("DELETE", f"/users/{uid}/interactions").status_code == 204
    assert http("GET", f"/users/{uid}/interactions").json()["total"] == 0
    assert http("GET", f"/users/{uid}").status_code == 200


# --- errors ---------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_service_token_is_required(http, token):
    uid = new_uid()
    response = http("POST", f"/users/{uid}", json={}, token=token)
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid service token", "code": "INVALID_SERVICE_TOKEN"}


def test_empty_configured_token_accepts_any_value_but_needs_the_header():
    with DevAgentServer(token="") as open_server:
        url = f"{open_server.base_url}/users/{new_uid()}"
        assert requests.post(url, json={}, headers={"X-Service-Token": "anything"}, timeout=5).status_code == 201
        assert requests.get(url, timeout=5).status_code == 401


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PATCH", "", {"preferences": {}}),
        ("PATCH", "/allergies", {"confirmed": [], "intolerances": [], "severity": {}}),
        ("DELETE", "", None),
        ("GET", "/interactions", None),
        ("DELETE", "/interactions", None),
    ],
)
def test_unknown_user_is_404_user_not_found(http, method, suffix, body):
    response = http(method, f"/users/{new_uid()}{suffix}", json=body)
    assert response.status_code == 404
    assert response.json()["code"] == "USER_NOT_FOUND"
    assert response.headers["X-Error-Code"] == "USER_NOT_FOUND"


@pytest.mark.parametrize(
    ("method", "suffix", "payload"),
    [
        ("POST", "", b"{not json"),
        ("POST", "", b"[1, 2]"),
        ("POST", "", b'{"dietary_flags": "vegan"}'),
        ("PATCH", "", b'{"vibes": ["x"]}'),
        ("PATCH", "", b'{"preferences": ["x"]}'),
        ("PATCH", "", b""),
        ("PATCH", "/allergies", b'{"confirmed": "peanuts"}'),
        ("PATCH", "/allergies", b'{"confirmed": ["peanuts"], "severity": {"peanuts": "deadly"}}'),
    ],
)
def test_malformed_payloads_are_422(http, method, suffix, payload):
    uid = make_user(http)
    response = http(method, f"/users/{uid}{suffix}", data=payload)
    assert response.status_code == 422
    assert response.json()["code"] == "INVALID_PAYLOAD"
    assert response.json()["detail"]


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "offset=-1", "include_response=maybe"])
def test_bad_interaction_queries_are_422(http, query):
    uid = make_user(http)
    response = http("GET", f"/users/{uid}/interactions?{query}")
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_PAYLOAD")


def test_non_uuid_uid_is_422(http):
    response = http("GET", "/users/not-a-uuid")
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_PAYLOAD")


def test_unknown_route_and_method(http):
    assert http("GET", "/nope").json()["code"] == "NOT_FOUND"
    response = http("PUT", f"/users/{new_uid()}", json={})
    assert (response.status_code, response.json()["code"]) == (405, "METHOD_NOT_ALLOWED")


def test_health_on_the_main_port_needs_no_token(http):
    assert http("GET", "/health", token=None).json()["status"] == "ok"


# --- control port -------------------------------------------------------------------


def test_request_log_records_calls_without_the_token(http, control):
    uid = new_uid()
    http("POST", f"/users/{uid}", json={"vibe_tags": ["quiet"]})
    http("GET", f"/users/{uid}", token="wrong")
    http("GET", f"/users/{uid}/interactions?limit=3", token=None)
    log = control.requests()
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("POST", f"/users/{uid}", 201),
        ("GET", f"/users/{uid}", 401),
        ("GET", f"/users/{uid}/interactions", 401),
    ]
    assert [(e["token_present"], e["token_valid"]) for e in log] == [(True, True), (True, False), (False, False)]
    assert log[0]["body"] == {"vibe_tags": ["quiet"]}
    assert log[2]["query"] == "limit=3"
    assert all(isinstance(e["timestamp"], float) for e in log)
    assert TOKEN not in str(log)


def test_reset_clears_users_log_and_faults(http, control):
    uid = make_user(http)
    control.fault(status=500, paths="^/nothing$")
    control.reset()
    assert control.state() == {"users": {}}
    assert control.requests() == []
    assert http("GET", f"/users/{uid}").status_code == 404  # no fault left, user gone


def test_fault_status_with_fail_count_then_healthy(http, control):
    uid = make_user(http)
    fault = control.fault(status=503, fail_count=2)
    assert fault["code"] == "AGENT_UNAVAILABLE" and fault["remaining"] == 2
    answers = [http("GET", f"/users/{uid}") for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].json() == {"detail": "injected fault (devagent)", "code": "AGENT_UNAVAILABLE"}
    assert control.requests()[-3]["status"] == 503


def test_fault_with_explicit_code_and_path_filter(http, control):
    uid = make_user(http)
    control.fault(status=404, code="USER_NOT_FOUND", paths=r"/allergies$")
    body = {"confirmed": [], "intolerances": [], "severity": {}}
    assert http("PATCH", f"/users/{uid}/allergies", json=body).json()["code"] == "USER_NOT_FOUND"
    assert http("GET", f"/users/{uid}").status_code == 200, "paths not matching the filter stay healthy"
    control.clear_faults()
    assert http("PATCH", f"/users/{uid}/allergies", json=body).status_code == 200


def test_fault_latency(http, control):
    uid = make_user(http)
    control.fault(latency_ms=300, fail_count=1)
    started = time.monotonic()
    assert http("GET", f"/users/{uid}").status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    http("GET", f"/users/{uid}")
    assert time.monotonic() - started < 0.3


def test_invalid_fault_is_rejected(control):
    with pytest.raises(requests.HTTPError) as info:
        control.fault(status=99)
    assert info.value.response.status_code == 422
    response = requests.post(f"{control.control_url}/fault", json={"bogus": 1}, timeout=5)
    assert response.json()["code"] == "INVALID_PAYLOAD"


def test_down_refuses_connections_and_up_restores_them(server, http, control):
    uid = make_user(http)
    control.down()
    assert control.health() == {"status": "ok", "main_up": False}
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=2).close()
    started = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        http("GET", f"/users/{uid}")
    assert time.monotonic() - started < 1, "a down Agent must refuse, not hang"
    control.up()
    assert control.health()["main_up"] is True
    assert http("GET", f"/users/{uid}").status_code == 200, "state survives down/up"


def test_add_interaction_validates(http, control):
    with pytest.raises(requests.HTTPError) as info:
        control.add_interaction(new_uid(), {"user_query": "x"})
    assert info.value.response.json()["code"] == "USER_NOT_FOUND"
    uid = make_user(http)
    with pytest.raises(requests.HTTPError) as info:
        control.add_interaction(uid, {"query": "typo"})
    assert info.value.response.status_code == 422
    item = control.add_interaction(uid, {"user_query": "x", "allergens_flagged": ["peanuts"]})
    assert item["uid"] == uid and isinstance(item["id"], int) and item["created_at"].endswith("Z")


# --- the CLI, as the end-to-end tests start it -----------------------------------------


def test_cli_starts_fast_prints_its_ports_and_stops_on_sigterm():
    env = {**os.environ, "AGENT_SERVICE_TOKEN": TOKEN}
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "agent_bridge.devagent", "--port", "0", "--control-port", "0"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        match = LISTENING_LINE_RE.search(line)
        assert match, f"unexpected first line {line!r}"
        assert time.monotonic() - started < 5
        base_url, control_url = match["base_url"], match["control_url"]
        uid = new_uid()
        created = requests.post(f"{base_url}/users/{uid}", json={}, headers={"X-Service-Token": TOKEN}, timeout=5)
        assert created.status_code == 201
        assert requests.get(f"{base_url}/users/{uid}", headers={"X-Service-Token": "x"}, timeout=5).status_code == 401
        ctl = DevAgentControl(control_url)
        ctl.wait_until_healthy()
        assert uid in ctl.state()["users"]
        ctl.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == "", "only the listening line goes to stdout"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


# --- AgentClient against the double: the contract round trip ------------------------


def test_client_round_trip(client, control):
    uid = new_uid()
    assert client.create_user(uid=uid) == {"uid": uid, "created": True}
    assert client.create_user(uid=uid) == {"uid": uid, "created": False}
    assert client.update_preferences(uid=uid, preferences={"vibes": ["quiet"]}) == {"uid": uid, "updated": True}
    answer = client.replace_allergies(
        uid=uid,
        confirmed=["peanuts"],
        intolerances=["lactose"],
        severity={"peanuts": "anaphylactic", "lactose": "intolerance"},
    )
    assert answer == {"uid": uid, "allergy_flags": ["lactose", "peanuts"], "updated": True}
    profile = client.get_user(uid=uid)
    assert profile["preferences"] == {"vibes": ["quiet"]}
    assert profile["allergy_flags"] == ["lactose", "peanuts"]

    control.add_interaction(uid, {"user_query": "q", "agent_response": {"ui_type": "text"}})
    page = client.get_interactions(uid=uid, include_response=True)
    assert page["total"] == 1 and page["interactions"][0]["agent_response"] == {"ui_type": "text"}
    assert client.clear_interactions(uid=uid) is None
    assert client.get_interactions(uid=uid)["total"] == 0

    assert client.delete_user(uid=uid) is True
    assert client.delete_user(uid=uid) is False
    assert all(entry["token_valid"] for entry in control.requests())


def test_client_errors_against_the_double(server, client, control):
    uid = new_uid()
    with pytest.raises(AgentUserNotFound):
        client.update_preferences(uid=uid, preferences={})
    with pytest.raises(AgentInvalidPayload):
        client.get_user(uid="not-a-uuid")
    with pytest.raises(AgentInvalidPayload):
        client.replace_allergies(uid=uid, confirmed=["x"], intolerances=[], severity={"x": "deadly"})
    wrong = AgentClient(base_url=server.base_url, service_token="wrong", timeout=2)
    with pytest.raises(AgentAuthError):
        wrong.create_user(uid=uid)


def test_client_sees_injected_failures_as_transient(client, control):
    uid = new_uid()
    client.create_user(uid=uid)

    control.fault(status=500, fail_count=1)
    with pytest.raises(AgentUnavailable) as info:
        client.get_user(uid=uid)
    assert (info.value.status, info.value.code, info.value.transient) == (500, "AGENT_UNAVAILABLE", True)

    control.fault(status=429, fail_count=1)
    with pytest.raises(AgentUnavailable):
        client.get_user(uid=uid)

    control.down()
    with pytest.raises(AgentConnectionError):
        client.get_user(uid=uid)
    control.up()
    assert client.get_user(uid=uid)["uid"] == uid


def test_client_timeout_against_latency(server, control):
    uid = new_uid()
    with AgentClient(base_url=server.base_url, service_token=TOKEN, timeout=0.2) as fast:
        fast.create_user(uid=uid)
        control.fault(latency_ms=600, fail_count=1)
        with pytest.raises(AgentTimeout):
            fast.get_user(uid=uid)
        assert fast.get_user(uid=uid)["uid"] == uid


# --- silent misbehaviour, and how the client classifies it ----------------------


def _wait_applied(control, applied: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while control.misbehaviour()["late_apply"]["applied"] < applied:
        assert time.monotonic() < deadline, control.misbehaviour()
        time.sleep(0.02)


ALLERGY_OLD = {"confirmed": ["peanuts"], "intolerances": [], "severity": {"peanuts": "anaphylactic"}}
ALLERGY_NEW = {"confirmed": ["sesame"], "intolerances": [], "severity": {"sesame": "severe"}}


def test_late_apply_lands_an_older_write_after_a_newer_one(server, control):
    uid = new_uid()
    with AgentClient(base_url=server.base_url, service_token=TOKEN, timeout=0.3) as fast:
        fast.create_user(uid=uid)
        control.late_apply(hold_ms=900, paths="/allergies$", count=1)
        with pytest.raises(AgentResponseTimeout) as info:
            fast.replace_allergies(uid=uid, **ALLERGY_OLD)
        assert isinstance(info.value, AgentOutcomeUnknown) and info.value.transient
        assert control.user(uid)["allergies"]["confirmed"] == [], "held, not applied yet"
        fast.replace_allergies(uid=uid, **ALLERGY_NEW)  # the newer write is answered at once
        assert control.user(uid)["allergies"] == ALLERGY_NEW
        _wait_applied(control, 1)
    assert control.user(uid)["allergies"] == ALLERGY_OLD, "the older write landed last"
    assert control.misbehaviour()["late_apply"] == {
        "hold_ms": 900,
        "answer": "late",
        "paths": "/allergies$",
        "remaining": 0,
        "held": 0,
        "applied": 1,
    }
    assert [r["late"] for r in control.requests() if r["path"].endswith("/allergies")] == [False, True]


def test_late_apply_without_answer_is_a_lost_connection(server, client, control):
    uid = new_uid()
    before = server.connections_accepted
    client.create_user(uid=uid)
    control.late_apply(hold_ms=300, paths="/allergies$", answer="none")
    with pytest.raises(AgentConnectionLost) as info:
        client.replace_allergies(uid=uid, **ALLERGY_OLD)
    assert isinstance(info.value, AgentOutcomeUnknown)
    assert server.connections_accepted - before == 1, "the write went over the kept-alive connection"
    _wait_applied(control, 1)
    assert control.user(uid)["allergies"] == ALLERGY_OLD


def test_a_refused_connection_or_a_read_timeout_is_not_an_unknown_outcome(server, client, control):
    uid = new_uid()
    client.create_user(uid=uid)
    control.down()
    try:
        with pytest.raises(AgentConnectionError) as refused:
            client.replace_allergies(uid=uid, **ALLERGY_OLD)
    finally:
        control.up()
    assert not isinstance(refused.value, AgentOutcomeUnknown), "nothing was sent"
    with AgentClient(base_url=server.base_url, service_token=TOKEN, timeout=0.2) as fast:
        control.fault(latency_ms=500, fail_count=1)
        with pytest.raises(AgentTimeout) as read:
            fast.get_user(uid=uid)
    assert not isinstance(read.value, AgentOutcomeUnknown), "a GET changes nothing"


def test_keep_erased_answers_204_and_keeps_the_user(http, control):
    kept, other = make_user(http), make_user(http)
    control.keep_erased(paths=kept)
    assert http("DELETE", f"/users/{kept}").status_code == 204
    assert http("DELETE", f"/users/{other}").status_code == 204
    assert control.user(kept) is not None and control.user(other) is None
    assert control.misbehaviour()["keep_erased"]["kept"] == 1


def test_forget_loses_every_user_but_keeps_the_log(http, control):
    make_user(http)
    make_user(http)
    control.forget()
    assert control.state() == {"users": {}}
    assert len(control.requests()) == 2


def test_tamper_loses_or_alters_allergies_and_preferences_silently(http, control):
    uid = make_user(http, allergies=ALLERGY_OLD, preferences={"vibes": ["cozy"]})
    before = control.user(uid)["updated_at"]
    control.tamper(uid, allergies=None)
    assert control.user(uid)["allergies"] == {"confirmed": [], "intolerances": [], "severity": {}}
    assert control.user(uid)["allergy_flags"] == []
    control.tamper(uid, allergies=ALLERGY_NEW, preferences={})
    held = control.user(uid)
    assert (held["allergies"], held["allergy_flags"], held["preferences"]) == (ALLERGY_NEW, ["sesame"], {})
    assert held["updated_at"] == before
    assert [r for r in control.requests() if r["path"].startswith("/tamper")] == [], "not on the main port"


def test_invalid_misbehaviour_is_rejected(control):
    for body in ({"late_apply": {"hold_ms": 0}}, {"late_apply": {"hold_ms": 5, "answer": "x"}}, {"nope": 1}):
        response = requests.post(f"{control.control_url}/misbehave", json=body, timeout=5)
        assert response.status_code == 422 and response.json()["code"] == "INVALID_PAYLOAD"
    assert control.misbehaviour() == {"late_apply": None, "keep_erased": None}


# --- connections: HTTP/1.1 keep-alive, like the real Agent's server ---------------


def _exchange(conn: HTTPConnection, method: str, path: str, body: bytes | None = None,
              token: str | None = TOKEN) -> tuple[HTTPResponse, bytes]:
    headers = {} if token is None else {"X-Service-Token": token}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response, response.read()


def _wait_until(condition, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_one_connection_serves_successes_errors_and_faults_each_with_its_length(server, control):
    uid = new_uid()
    allergies = json.dumps(ALLERGY_OLD).encode()
    calls = [
        ("POST", f"/users/{uid}", b"{}", TOKEN, 201),
        ("PATCH", f"/users/{uid}/allergies", allergies, TOKEN, 200),
        ("PATCH", f"/users/{uid}/allergies", allergies, None, 401),  # refused: its body is read all the same
        ("PATCH", f"/users/{uid}/allergies", b"{not json", TOKEN, 422),
        ("GET", f"/users/{new_uid()}", None, TOKEN, 404),
        ("GET", "/nowhere", None, TOKEN, 404),
        ("PUT", f"/users/{uid}", b"{}", TOKEN, 405),
        ("GET", f"/users/{uid}", None, TOKEN, 503),  # injected below
        ("DELETE", f"/users/{uid}/interactions", None, TOKEN, 204),
        ("GET", f"/users/{uid}", None, TOKEN, 200),
    ]
    conn = HTTPConnection(server.host, server.port, timeout=5)
    try:
        before = server.connections_accepted
        first = None
        for method, path, body, token, status in calls:
            if status == 503:
                control.fault(status=503, fail_count=1, latency_ms=20)
            response, data = _exchange(conn, method, path, body, token)
            assert (response.status, response.version) == (status, 11), (method, path, data)
            assert response.headers["Content-Length"] == str(len(data)), (method, path)
            assert response.headers.get("Connection") != "close", (method, path)
            first = first or conn.sock
            assert conn.sock is not None and conn.sock is first, f"{method} {path} {status} closed the connection"
        assert server.connections_accepted - before == 1
    finally:
        conn.close()
    assert control.user(uid)["allergies"] == ALLERGY_OLD


def test_the_control_port_keeps_the_connection_alive_too(server, control):
    conn = HTTPConnection(server.host, server.control_port, timeout=5)
    try:
        response, _ = _exchange(conn, "GET", "/health")
        sock = conn.sock
        response, data = _exchange(conn, "POST", "/fault", b'{"bogus": 1}')
        assert response.status == 422 and response.headers["Content-Length"] == str(len(data))
        response, _ = _exchange(conn, "GET", "/state")
        assert response.status == 200 and sock is not None and conn.sock is sock
    finally:
        conn.close()


def test_a_body_of_unknown_length_is_answered_and_its_connection_closed(server, control):
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"PATCH /users/%s/allergies HTTP/1.1\r\nHost: x\r\nX-Service-Token: %s\r\n"
                     b"Content-Length: nine\r\n\r\n{}" % (new_uid().encode(), TOKEN.encode()))
        answer = b""
        while chunk := sock.recv(65536):  # the server closes after its answer
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 4"), answer
    assert b"\r\nConnection: close" in head and f"Content-Length: {len(body)}".encode() in head, answer


@pytest.fixture
def short_keep_alive():
    with DevAgentServer(token=TOKEN, keep_alive_s=0.3) as running:
        yield running


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(short_keep_alive):
    server = short_keep_alive
    conn = HTTPConnection(server.host, server.port, timeout=5)
    try:
        started = time.monotonic()
        assert _exchange(conn, "GET", "/health")[0].status == 200
        assert server.connections_open == 1
        assert conn.sock.recv(1) == b"", "the server closes an idle connection"
        assert 0.3 <= time.monotonic() - started < 5, "kept alive for the timeout, then closed"
    finally:
        conn.close()
    _wait_until(lambda: server.connections_open == 0, "the connection's handler thread ends")


def test_a_connection_no_longer_counted_open_is_already_closed_for_the_client(monkeypatch):
    """`connections_open` falls only once the FIN is sent, so a test (or a client) that waits for
    it never writes into a socket the server is about to close. socketserver closes the socket
    after the handler returns; the delay stands in for a loaded machine's scheduling."""
    late_close = _Server.shutdown_request

    def slow_shutdown_request(self, request):
        time.sleep(0.5)
        late_close(self, request)

    monkeypatch.setattr(_Server, "shutdown_request", slow_shutdown_request)
    with DevAgentServer(token=TOKEN, keep_alive_s=0.2) as server:
        conn = HTTPConnection(server.host, server.port, timeout=5)
        try:
            assert _exchange(conn, "GET", "/health")[0].status == 200
            _wait_until(lambda: server.connections_open == 0, "the server closes the idle connection")
            conn.sock.settimeout(0.05)
            assert conn.sock.recv(1) == b"", "the client sees the close as soon as the server counts it"
        finally:
            conn.close()


def test_down_closes_idle_kept_alive_connections_at_once(server, control):
    conn = HTTPConnection(server.host, server.port, timeout=5)
    try:
        assert _exchange(conn, "GET", "/health")[0].status == 200
        assert server.connections_open >= 1
        control.down()
        try:
            conn.sock.settimeout(1)
            assert conn.sock.recv(1) == b"", "a down Agent keeps no connection open"
        finally:
            control.up()
    finally:
        conn.close()


def test_a_request_in_flight_when_the_agent_goes_down_is_answered_then_closed(server, http, control):
    uid = make_user(http)
    control.fault(latency_ms=600, fail_count=1)
    conn = HTTPConnection(server.host, server.port, timeout=5)
    answered: dict = {}

    def call() -> None:
        response, data = _exchange(conn, "GET", f"/users/{uid}")
        answered.update(status=response.status, connection=response.headers.get("Connection"), data=data)

    worker = threading.Thread(target=call)
    try:
        worker.start()
        _wait_until(lambda: server.state.current_fault() is None, "the slow request took its fault: it is in flight")
        control.down()
        worker.join(5)
        assert answered["status"] == 200 and answered["connection"] == "close", answered
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.host, server.port), timeout=2).close()
    finally:
        control.up()
        conn.close()


def test_the_client_reuses_its_connection_and_survives_the_server_closing_it(short_keep_alive):
    server = short_keep_alive
    uid = new_uid()
    with AgentClient(base_url=server.base_url, service_token=TOKEN, timeout=2) as agent:
        before = server.connections_accepted
        agent.create_user(uid=uid)
        agent.replace_allergies(uid=uid, **ALLERGY_OLD)
        assert agent.get_user(uid=uid)["allergies"] == ALLERGY_OLD
        assert server.connections_accepted - before == 1, "one connection for three calls"
        _wait_until(lambda: server.connections_open == 0, "the server closes the idle connection")
        agent.replace_allergies(uid=uid, **ALLERGY_NEW)  # a write: it must not be lost to the stale socket
        assert agent.get_user(uid=uid)["allergies"] == ALLERGY_NEW
        assert server.connections_accepted - before == 2
