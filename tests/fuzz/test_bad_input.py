"""Hand-written bad input against every route that can change state (found by URL introspection).

Each case must be refused with a 4xx JSON `{"detail", "code"}` and must leave every table as it
was. Run on SQLite and on PostgreSQL (DATABASE_URL=postgres://...): PostgreSQL refuses NUL in
text, which must surface as a 400, never as a 500.
"""
import json

import pytest
from django.conf import settings

from tests.fuzz.bodies import request_schema
from tests.security.routes import write_routes

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db]

WRITES = write_routes()
IDS = [f"{method} {route.key}" for route, method in WRITES]

SQL_AND_HTML = [
    "Robert'); DROP TABLE identity_user;--",
    "' OR '1'='1",
    '" OR ""="',
    "1; SELECT pg_sleep(5)--",
    "<script>alert('x')</script>",
    '"><img src=x onerror=alert(1)>',
    "{{7*7}} ${7*7} %s %(x)s",
]


def assert_refused(response, *statuses: int) -> dict:
    allowed = statuses or tuple(range(400, 500))
    assert response.status_code in allowed, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = json.loads(response.content)
    assert isinstance(body, dict), body
    assert isinstance(body.get("detail"), str) and isinstance(body.get("code"), str), body
    return body


@pytest.mark.parametrize(("route", "method"), WRITES, ids=IDS)
def test_body_over_the_upload_limit_is_413(send, db_state, body_of, route, method) -> None:
    body_of(route, method)  # skips operations that take no body
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = json.dumps({"padding": "x" * (limit + 1024)}).encode()
    with db_state.unchanged():
        assert_refused(send(route, method, body), 413)


BAD_BODIES = [
    b"[" + b"1," * 40_000 + b"1]",
    b"[" * 10_000 + b"]" * 10_000,
    b"\xff\xfe\x00{",
    b"{",
    b"null",
    b'{"a": "nul\\u0000"}',
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=["huge", "deep", "non-utf8", "truncated", "null", "nul"])
@pytest.mark.parametrize(("route", "method"), WRITES, ids=IDS)
def test_operations_without_a_body_ignore_a_bad_one(send, body_of, route, method, body) -> None:
    """An operation that takes no body (logout, DELETE allergies) never reads it: it must neither
    fail on a bad one nor document a body it ignores."""
    if body_of.takes_body(route, method):
        pytest.skip("takes a body: see the other tests")
    assert request_schema(route.path, method) is None
    response = send(route, method, body)
    assert response.status_code < 500, response.content[:300]
    if response.status_code >= 400:
        assert_refused(response)


@pytest.mark.parametrize("depth", [10_000, 100_000])
@pytest.mark.parametrize(("route", "method"), WRITES, ids=IDS)
def test_deeply_nested_json_is_400(send, db_state, body_of, route, method, depth) -> None:
    body_of(route, method)
    for body in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        with db_state.unchanged():
            assert_refused(send(route, method, body), 400, 413)


@pytest.mark.parametrize(("route", "method"), WRITES, ids=IDS)
def test_nesting_just_under_the_recursion_limit_is_refused_or_stored(send, body_of, route, method) -> None:
    """Parses, but anything that walks it recursively (validation, merge, JSON encoding) must cope."""
    depth = 900
    body = body_of(route, method)("x")
    nested: object = "x"
    for _ in range(depth):
        nested = {"k": nested}
    if isinstance(body, dict):
        body = {key: nested for key in body} or {"k": nested}
    response = send(route, method, json.dumps(body).encode())
    assert response.status_code < 500, response.content[:300]
    if response.status_code >= 400:
        assert_refused(response)


@pytest.mark.parametrize(("route", "method"), WRITES, ids=IDS)
def test_non_utf8_body_is_400(send, db_state, body_of, route, method) -> None:
    body_of(route, method)
    for body in (b'{"email": "\xff\xfe\xfd"}', b"\xff\xfe\x00{", b'{"a": "\xc3\x28"}'):
        with db_state.unchanged():
            assert_refused(send(route, method, body), 400)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", b"email=a%40example.com&password=x"),
        ("multipart/form-data; boundary=xyz", b'--xyz\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--xyz--'),
        ("text/plain", b'{"email": "a@example.com"}'),
        ("application/xml", b"<?xml version='1.0'?><a><email>a@example.com</email></a>"),
        ("application/json-patch+json", b"[]"),
    ],
    ids=["form", "multipart", "text", "xml", "json-patch"],
)
@pytest.mark.parametrize(("route", "method"), WRITES, ids=IDS)
def test_wrong_content_type_is_415(send, db_state, body_of, route, method, content_type, body) -> None:
    body_of(route, method)
    with db_state.unchanged():
        assert_refused(send(route, method, body, content_type=content_type), 415)


NOT_OBJECTS = [b"[]", b'[{"a": 1}]', b'"a string"', b"null", b"42", b"true", b"{", b"{}}", b"{'a': 1}"]


@pytest.mark.parametrize("body", NOT_OBJECTS)
@pytest.mark.parametrize(("route", "method"), WRITES, ids=IDS)
def test_json_that_is_not_an_object_is_400(send, db_state, body_of, route, method, body) -> None:
    body_of(route, method)
    with db_state.unchanged():
        assert_refused(send(route, method, body), 400)


@pytest.mark.parametrize("text", ["nul\x00byte", "\x00", "a@exa\x00mple.com"], ids=["inner", "only", "email"])
@pytest.mark.parametrize(("route", "method"), WRITES, ids=IDS)
def test_nul_bytes_are_400(send, db_state, body_of, route, method, text) -> None:
    """Every string of the body carries a NUL (PostgreSQL cannot store one)."""
    body = body_of(route, method)(text)
    if body == body_of(route, method)("plain"):
        pytest.skip(f"{method} {route.key} takes no string")  # e.g. PATCH /api/notifications/ (booleans)
    with db_state.unchanged():
        assert_refused(send(route, method, json.dumps(body).encode()))


@pytest.mark.parametrize("text", SQL_AND_HTML)
@pytest.mark.parametrize(("route", "method"), WRITES, ids=IDS)
def test_sql_and_html_looking_strings_are_plain_data(send, body_of, route, method, text) -> None:
    """Accepted or refused on their merits, never an error, and answered as JSON only."""
    body = body_of(route, method)(text)
    response = send(route, method, json.dumps(body).encode())
    assert response.status_code < 500, response.content[:300]
    assert response.status_code == 204 or response["Content-Type"].startswith("application/json")
    assert response.get("X-Content-Type-Options") == "nosniff"
    lowered = response.content.lower()
    for leak in (b"syntax error", b"sqlite", b"psycopg", b"traceback", b"operationalerror"):
        assert leak not in lowered, response.content[:500]


@pytest.mark.parametrize("text", SQL_AND_HTML)
def test_sql_and_html_looking_strings_round_trip_verbatim(client, account, text) -> None:
    """Stored as data and returned as data: JSON-escaped, never interpreted, never mangled."""
    auth = {"HTTP_AUTHORIZATION": f"Token {account.token}"}

    def call(method: str, path: str, body: dict | None = None) -> dict:
        response = client.generic(method, path, data=json.dumps(body or {}), content_type="application/json", **auth)
        assert response.status_code == 200, (path, response.content[:300])
        assert response["Content-Type"].startswith("application/json")
        return json.loads(response.content)

    call("PATCH", "/api/me/", {"username": text})
    assert call("GET", "/api/me/")["username"] == text

    call("PATCH", "/api/preferences/", {"preferences": {"vibes": [text]}})
    assert call("GET", "/api/preferences/")["preferences"]["vibes"] == [text]

    call("PUT", "/api/allergies/", {"confirmed": [text], "intolerances": [], "severity": {text: "severe"}})
    from allergies.vocabulary import allergen_normalize

    # Unknown allergen names are normalised by the vocabulary's rule, then stored as plain data.
    assert call("GET", "/api/allergies/")["confirmed"] == [allergen_normalize(text)]
