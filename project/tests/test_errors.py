"""project/errors.py and project/parsers.py: every bad request to an identity endpoint is a 4xx
JSON {"detail", "code"} (+ "errors" on validation) and changes nothing."""
import json

import pytest
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404
from django.test import RequestFactory
from rest_framework.test import APIClient

from project import errors

pytestmark = pytest.mark.django_db

PUBLIC = [
    ("post", "/api/signup/"),
    ("post", "/api/verify/resend/"),
    ("post", "/api/login/"),
    ("post", "/api/password/reset/"),
    ("post", "/api/password/reset/confirm/"),
]
AUTHENTICATED = [
    ("post", "/api/password/change/"),
    ("patch", "/api/me/"),
    ("delete", "/api/account/"),
    ("patch", "/api/preferences/"),
]
SERVICE = [("post", "/api/internal/validate-token/")]
ENDPOINTS = PUBLIC + AUTHENTICATED + SERVICE

BAD_BODIES = {
    "malformed JSON": (b'{"email": ', "application/json"),
    "truncated string": (b'{"email": "a@b', "application/json"),
    "not an object": (b"[1, 2, 3]", "application/json"),
    "a bare string": (b'"hello"', "application/json"),
    "null": (b"null", "application/json"),
    "NaN": (b'{"email": NaN}', "application/json"),
    "non-UTF-8": ('{"email": "é@example.com", "password": "ü"}'.encode("latin-1"), "application/json"),
    "invalid UTF-8 bytes": (b'{"email": "\xff\xfe"}', "application/json"),
    "wrong types": (
        json.dumps(
            {"email": 5, "password": [], "username": {}, "token": 1, "current_password": None,
             "new_password": True, "preferences": 7}
        ).encode(),
        "application/json",
    ),
    "missing fields": (b"{}", "application/json"),
    "oversized fields": (
        json.dumps(
            {key: "x" * 5000 for key in ("email", "password", "username", "token", "current_password",
                                         "new_password")} | {"preferences": {"vibes": ["x" * 5000]}}
        ).encode(),
        "application/json",
    ),
    "form encoded": (b"email=a%40b.c&password=x", "application/x-www-form-urlencoded"),
}


@pytest.fixture
def client_for(issued_token, settings):
    def make(path: str) -> APIClient:
        client = APIClient()
        if (None, path) in {(None, p) for _, p in AUTHENTICATED}:
            client.credentials(HTTP_AUTHORIZATION=f"Token {issued_token.raw}")
        if path == SERVICE[0][1]:
            client.credentials(HTTP_X_SERVICE_TOKEN=settings.AGENT_SERVICE_TOKEN)
        return client

    return make


@pytest.fixture
def snapshot(verified_user):
    from agent_bridge.models import OutboxEvent
    from identity.models import AuthToken, User, UserPreferences

    def take() -> tuple:
        users = sorted(User.objects.values_list("uid", "email", "username", "password", "is_verified"))
        tokens = sorted(AuthToken.objects.values_list("id", "revoked_at"))
        prefs = sorted(UserPreferences.objects.values_list("user_id", "revision"))
        return users, tokens, prefs, OutboxEvent.objects.count()

    return take


def assert_error_shape(response, *, statuses=range(400, 500)) -> dict:
    assert response.status_code in statuses, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and isinstance(body["code"], str)
    return body


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_bodies_are_4xx_json_and_change_nothing(client_for, snapshot, method, path, case) -> None:
    raw, content_type = BAD_BODIES[case]
    before = snapshot()

    response = getattr(client_for(path), method)(path, data=raw, content_type=content_type)

    body = assert_error_shape(response)
    if response.status_code == 400 and body["code"] != "parse_error":
        assert "errors" in body
    assert snapshot() == before


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_oversized_bodies_are_413(client_for, snapshot, settings, method, path) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    raw = json.dumps({"email": "a@example.com", "padding": "x" * 2048}).encode()
    before = snapshot()

    response = getattr(client_for(path), method)(path, data=raw, content_type="application/json")

    assert_error_shape(response, statuses={413})
    assert response.json() == {"detail": "Request body too large.", "code": "request_too_large"}
    assert snapshot() == before


def test_a_lying_content_length_does_not_get_past_the_limit(settings, db) -> None:
    """The parser reads at most limit + 1 bytes, whatever Content-Length claims."""
    import io

    from project.parsers import JSONParser

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    request = RequestFactory().post("/", data=b"{}", content_type="application/json")
    request.META["CONTENT_LENGTH"] = "2"
    with pytest.raises(errors.RequestTooLarge):
        JSONParser().parse(io.BytesIO(b'{"a": "' + b"x" * 500 + b'"}'), parser_context={"request": request})


def test_unknown_route_and_wrong_method_are_json(api_client) -> None:
    assert assert_error_shape(api_client.get("/api/does-not-exist/"))["code"] == "not_found"
    assert assert_error_shape(api_client.get("/api/login/"))["code"] == "method_not_allowed"


def test_validation_errors_carry_per_field_messages_and_codes(api_client) -> None:
    body = api_client.post("/api/login/", {"email": "nope"}, format="json").json()
    assert body["detail"] == "Invalid input."
    assert body["code"] == "validation_error"
    assert body["errors"] == {
        "email": [{"message": "Enter a valid email address.", "code": "invalid"}],
        "password": [{"message": "This field is required.", "code": "required"}],
    }


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/verify/resend/", {}),  # required
        ("/api/signup/", {"username": "", "email": "a@example.com", "password": "a-long-passphrase-42"}),  # blank
        ("/api/login/", {"email": "a" * 300 + "@example.com", "password": "x"}),  # max_length
    ],
)
def test_every_validation_error_has_one_top_level_code(api_client, path, body) -> None:
    """Whatever the field and the problem, the top-level code is the same; the field says what."""
    answer = api_client.post(path, body, format="json").json()
    assert answer["code"] == "validation_error"
    assert all(set(p) == {"message", "code"} for problems in answer["errors"].values() for p in problems)


def test_nested_field_errors_are_flattened_to_dotted_paths() -> None:
    from rest_framework import exceptions

    exc = exceptions.ValidationError({"confirmed": {0: ["Not a string."]}, "severity": {"peanuts": ["Bad."]}})
    response = errors.api_exception_handler(exc, {})
    assert response.data["errors"] == {
        "confirmed.0": [{"message": "Not a string.", "code": "invalid"}],
        "severity.peanuts": [{"message": "Bad.", "code": "invalid"}],
    }


class _Gone(errors.ApplicationError):
    status_code = 410
    code = "gone_away"
    message = "It went away."


def test_application_errors_carry_their_status_code_and_field() -> None:
    plain = errors.api_exception_handler(_Gone(), {})
    assert (plain.status_code, plain.data) == (410, {"detail": "It went away.", "code": "gone_away"})

    on_field = errors.api_exception_handler(_Gone("Not this one.", field="thing"), {})
    assert on_field.status_code == 400
    assert on_field.data == {
        "detail": "Invalid input.",
        "code": "validation_error",
        "errors": {"thing": [{"message": "Not this one.", "code": "gone_away"}]},
    }


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (RequestDataTooBig("too big"), 413, "request_too_large"),
        (SuspiciousOperation("nope"), 400, "bad_request"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), 400, "parse_error"),
        (Http404("secret path detail"), 404, "not_found"),
        (PermissionDenied("secret reason"), 403, "permission_denied"),
    ],
)
def test_django_exceptions_become_the_error_shape(exc, status, code) -> None:
    response = errors.api_exception_handler(exc, {"request": None, "view": None})
    assert response.status_code == status
    assert response.data["code"] == code
    assert "secret" not in response.data["detail"]


def test_non_api_exceptions_are_left_to_django(settings) -> None:
    settings.DEBUG = False
    assert errors.api_exception_handler(RuntimeError("boom"), {}) is None


def test_structured_api_exception_detail_is_kept_under_errors() -> None:
    from rest_framework import exceptions

    response = errors.api_exception_handler(exceptions.APIException({"field": ["bad"]}), {})
    assert response.data == {
        "detail": "Request failed.", "code": "error", "errors": {"field": [{"message": "bad", "code": "error"}]}
    }


def test_django_level_handlers_answer_json() -> None:
    request = RequestFactory().get("/")
    assert json.loads(errors.json_bad_request(request).content)["code"] == "bad_request"
    too_big = errors.json_bad_request(request, RequestDataTooBig())
    assert too_big.status_code == 413
    assert errors.json_permission_denied(request).status_code == 403
    assert errors.json_not_found(request).status_code == 404
    assert errors.json_server_error(request).status_code == 500


def test_an_unexpected_exception_is_json_in_debug_too(settings, caplog) -> None:
    """Production answers through handler500 (JSON); DEBUG would show Django's HTML debug page."""
    settings.DEBUG = True
    response = errors.api_exception_handler(RuntimeError("boom"), {"view": "SomeView"})
    assert response.status_code == 500
    assert response.data == {"detail": "Internal server error.", "code": "server_error"}
    assert "boom" in caplog.text  # the traceback is for the console, not the answer


def test_only_a_transient_database_conflict_answers_conflict_retry(settings) -> None:
    """The real thing, a PostgreSQL deadlock between two requests, is in
    identity/tests/test_erase_concurrency.py; here, what is and is not one."""
    from django.db import IntegrityError, OperationalError

    settings.DEBUG = False
    busy = errors.api_exception_handler(OperationalError("database is locked"), {"view": None})
    assert (busy.status_code, busy.data["code"], busy["Retry-After"]) == (503, "conflict_retry", "1")
    vanished = errors.api_exception_handler(IntegrityError("FOREIGN KEY constraint failed"), {"view": None})
    assert (vanished.status_code, vanished.data["code"]) == (503, "conflict_retry")
    # A database that is down is not a conflict a retry a second later resolves, nor is a unique
    # constraint the code did not expect: Django's 500.
    assert errors.api_exception_handler(OperationalError("connection refused"), {"view": None}) is None
    assert errors.api_exception_handler(IntegrityError("UNIQUE constraint failed"), {"view": None}) is None
