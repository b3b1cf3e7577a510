import json
import re

import pytest

from project.middleware import request_id_from

pytestmark = pytest.mark.django_db


def _lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_a_request_without_an_id_gets_a_fresh_one_on_the_response(api_client) -> None:
    first = api_client.get("/api/health/")
    second = api_client.get("/api/health/")

    assert re.fullmatch(r"[0-9a-f]{32}", first["X-Request-ID"])
    assert first["X-Request-ID"] != second["X-Request-ID"]


def test_a_sane_incoming_id_is_echoed(api_client) -> None:
    response = api_client.get("/api/health/", HTTP_X_REQUEST_ID="frontend-42.abc:7")
    assert response["X-Request-ID"] == "frontend-42.abc:7"


@pytest.mark.parametrize(
    "raw",
    ["", "has space", "line\nbreak", "trailing-newline\n", "x" * 129, "<script>", "-leading-dash", "ünïcode"],
)
def test_an_insane_incoming_id_is_replaced(raw: str) -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", request_id_from(raw))


def test_the_request_line_and_other_records_of_the_request_carry_its_id(api_client, json_log) -> None:
    api_client.get("/api/health/", HTTP_X_REQUEST_ID="req-123")
    api_client.get("/api/no-such-endpoint/", HTTP_X_REQUEST_ID="req-404")

    lines = _lines(json_log)
    request_line = next(line for line in lines if line["logger"] == "project.middleware" and line["status"] == 200)
    assert request_line["request_id"] == "req-123"
    assert request_line["method"] == "GET" and request_line["status"] == 200
    # Django's own "Not Found" warning, logged deep inside the request, gets the id too.
    not_found = next(line for line in lines if line["logger"] == "django.request")
    assert not_found["request_id"] == "req-404"


def test_no_request_id_leaks_onto_records_outside_a_request(api_client, json_log) -> None:
    import logging

    api_client.get("/api/health/")
    logging.getLogger(__name__).info("outside any request")

    outside = next(line for line in _lines(json_log) if line["message"] == "outside any request")
    assert "request_id" not in outside


@pytest.mark.parametrize(
    ("path", "admin_middleware_ran"), [("/api/allergies/", False), ("/api/me/", False), ("/admin/login/", True)]
)
def test_admin_middleware_is_skipped_on_the_api(path, admin_middleware_ran) -> None:
    from django.http import HttpResponse
    from django.test import RequestFactory

    from project.middleware import AuthenticationMiddleware, MessageMiddleware, SessionMiddleware

    seen = {}

    def view(request):
        seen.update(session=hasattr(request, "session"), user=hasattr(request, "user"),
                    messages=hasattr(request, "_messages"))
        return HttpResponse("ok")

    chain = view
    for middleware in (MessageMiddleware, AuthenticationMiddleware, SessionMiddleware):
        chain = middleware(chain)
    assert chain(RequestFactory().get(path)).status_code == 200
    assert seen == {"session": admin_middleware_ran, "user": admin_middleware_ran, "messages": admin_middleware_ran}


@pytest.mark.django_db
def test_admin_still_gets_its_session_login(admin_client) -> None:
    assert admin_client.get("/admin/").status_code == 200
