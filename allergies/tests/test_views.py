"""GET/PUT/DELETE /api/allergies/: shapes of DESIGN §6 and 400s that name the field."""
import pytest

from agent_bridge.models import OutboxEvent
from allergies import selectors, services
from allergies.tests.test_selectors import sync_of

URL = "/api/allergies/"
BODY = {
    "confirmed": ["Peanut", "shrimp"],
    "intolerances": ["Lactose"],
    "severity": {"peanuts": "anaphylactic", "prawns": "severe", "lactose": "intolerance"},
}
KEYS = {
    "confirmed", "intolerances", "severity", "allergy_flags", "recognised", "custom", "revision", "updated_at", "sync"
}


def test_get_without_a_profile(auth_client) -> None:
    response = auth_client.get(URL)
    assert response.status_code == 200
    assert response.json() == {
        "confirmed": [],
        "intolerances": [],
        "severity": {},
        "allergy_flags": [],
        "recognised": [],
        "custom": [],
        "revision": 0,
        "updated_at": None,
        "sync": sync_of("synced", 0, 0),
    }


def test_put_answers_the_normalised_profile_pending_sync(auth_client) -> None:
    response = auth_client.put(URL, BODY, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == KEYS | {"message"}
    assert body["confirmed"] == ["peanuts", "crustaceans"]
    assert body["intolerances"] == ["lactose"]
    assert body["severity"] == {"peanuts": "anaphylactic", "crustaceans": "severe", "lactose": "intolerance"}
    assert body["allergy_flags"] == ["crustaceans", "lactose", "peanuts"]
    assert (body["recognised"], body["custom"]) == (["peanuts", "crustaceans"], ["lactose"])
    assert body["revision"] == 1
    assert body["updated_at"]
    assert body["sync"] == sync_of("pending", 1, 0)
    assert auth_client.get(URL).json() == {k: v for k, v in body.items() if k != "message"}


def test_get_shows_synced_and_failing(auth_client, verified_user) -> None:
    auth_client.put(URL, BODY, format="json")
    services.allergy_sync_record_failure(uid=verified_user.uid, error="AgentUnavailable 500")
    assert auth_client.get(URL).json()["sync"]["state"] == "failing"
    services.allergy_sync_record_success(uid=verified_user.uid, revision=1)
    assert auth_client.get(URL).json()["sync"] == sync_of("synced", 1, 1)


def test_delete_clears_the_profile_as_a_new_revision(auth_client) -> None:
    auth_client.put(URL, BODY, format="json")
    response = auth_client.delete(URL)
    assert response.status_code == 200
    body = response.json()
    assert body["message"]
    assert (body["confirmed"], body["intolerances"], body["severity"], body["allergy_flags"]) == ([], [], {}, [])
    assert body["revision"] == 2
    assert OutboxEvent.objects.filter(type="allergies.replaced").count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"confirmed": ["milk"], "severity": {}}, "severity"),  # a listed allergen without a severity
        ({"confirmed": ["milk"], "severity": {"milk": "deadly"}}, "severity"),  # unknown level
        ({"confirmed": ["milk"], "severity": {"milk": "severe", "eggs": "mild"}}, "severity"),
        ({"confirmed": ["milk"], "severity": {"milk": "severe", "eggs": "severe"}}, "severity"),  # unlisted
        ({"confirmed": ["Peanut", "peanuts"], "severity": {"peanuts": "severe"}}, "confirmed"),  # duplicate
        ({"intolerances": ["soy", "soya"], "severity": {"soybeans": "intolerance"}}, "intolerances"),
        ({"confirmed": [""], "severity": {}}, "confirmed"),  # empty name
        ({"intolerances": ["  "], "severity": {}}, "intolerances"),
        ({"confirmed": ["x" * 65], "severity": {}}, "confirmed"),  # over-long name
        ({"confirmed": [f"a{i}" for i in range(51)], "severity": {f"a{i}": "severe" for i in range(51)}},
         "confirmed"),  # too many
        ({"confirmed": "peanuts", "severity": {}}, "confirmed"),  # not a list
        ({"confirmed": [], "severity": ["peanuts"]}, "severity"),  # not an object
        ({"confirmed": None}, "confirmed"),
    ],
)
def test_put_refuses_invalid_profiles_naming_the_field(auth_client, body: dict, field: str) -> None:
    response = auth_client.put(URL, body, format="json")
    assert response.status_code == 400
    payload = response.json()
    assert payload["detail"] and payload["code"]
    assert field in payload["errors"]
    assert auth_client.get(URL).json()["revision"] == 0
    assert not OutboxEvent.objects.filter(type="allergies.replaced").exists()


@pytest.mark.parametrize("raw", ["[]", "not json", '"text"'])
def test_put_refuses_a_body_that_is_not_an_object(auth_client, raw: str) -> None:
    response = auth_client.put(URL, raw, content_type="application/json")
    assert response.status_code == 400
    assert {"detail", "code"} <= set(response.json())


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_authentication_is_required(api_client, db, method: str) -> None:
    response = getattr(api_client, method)(URL, BODY, format="json") if method == "put" else getattr(
        api_client, method
    )(URL)
    assert response.status_code in (401, 403)
    assert {"detail", "code"} <= set(response.json())


def test_token_authentication_works(api_client, verified_user) -> None:
    from identity import services as identity_services

    issued = identity_services.auth_token_issue(user=verified_user)
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {issued.raw}")
    assert api_client.put(URL, BODY, format="json").status_code == 200
    assert api_client.get(URL).json()["revision"] == 1


def test_put_with_a_body_naming_no_field_is_refused_and_keeps_the_profile(auth_client) -> None:
    auth_client.put("/api/allergies/", {"confirmed": ["peanuts"], "severity": {"peanuts": "severe"}}, format="json")

    response = auth_client.put("/api/allergies/", {}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"]["non_field_errors"]
    assert auth_client.get("/api/allergies/").json()["confirmed"] == ["peanuts"]


def test_the_allergen_vocabulary_is_public_and_cacheable(api_client) -> None:
    from allergies.vocabulary import ALLERGENS

    response = api_client.get("/api/allergens/")
    assert response.status_code == 200
    assert "public" in response["Cache-Control"] and "max-age=86400" in response["Cache-Control"]
    body = response.json()
    assert [a["name"] for a in body["allergens"]] == [a.name for a in ALLERGENS]
    walnuts = next(a for a in body["allergens"] if a["name"] == "walnuts")
    assert walnuts == {
        "name": "walnuts", "group": "tree nuts", "sources": ["EU 1169/2011 Annex II"], "eu": True, "us": False,
        "synonyms": ["walnut"], "notes": "",
    }
    assert body["severity_levels"] == ["anaphylactic", "severe", "moderate", "intolerance"]


def test_get_is_one_statement(auth_client, verified_user, django_assert_num_queries) -> None:
    services.allergy_profile_replace(user=verified_user, **BODY)
    auth_client.get(URL)  # the token's first use is recorded (a write at most every few minutes)
    with django_assert_num_queries(1):
        response = auth_client.get(URL)
    assert response.status_code == 200 and response.json()["revision"] == 1


UNUSABLE = ["revoke", "revoke_all", "expire", "deactivate"]


def make_unusable(change: str, user, issued_token) -> None:
    """Make the token unusable the way `change` says: logout, logout-all, expiry, deactivation."""
    from datetime import timedelta

    from django.utils import timezone

    from identity import services as identity_services

    if change == "revoke":
        identity_services.auth_token_revoke(token=issued_token.token)
    elif change == "revoke_all":
        identity_services.user_logout_all(user=user)
    elif change == "expire":
        issued_token.token.expires_at = timezone.now() - timedelta(seconds=1)
        issued_token.token.save()
    else:
        user.is_active = False
        user.save()


@pytest.mark.parametrize("change", UNUSABLE)
def test_get_refuses_a_token_revoked_just_before(api_client, verified_user, issued_token, change) -> None:
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {issued_token.raw}")
    assert api_client.get(URL).status_code == 200
    make_unusable(change, verified_user, issued_token)
    response = api_client.get(URL)
    assert response.status_code == 401 and response.json()["code"] == "invalid_token"


def test_rendered_answer_equals_the_output_serializers(verified_user) -> None:
    from allergies.selectors import AllergyState
    from allergies.serializers import AllergyProfileMessageOutputSerializer, AllergyProfileOutputSerializer
    from allergies.views import _render

    services.allergy_profile_replace(user=verified_user, **BODY)
    services.allergy_sync_record_failure(uid=verified_user.uid, error="agent down")
    states = [AllergyState.of(None), selectors.allergy_profile_get(user=verified_user)]
    assert states[1].sync_state == "failing"
    for state in states:
        assert _render(state) == AllergyProfileOutputSerializer(state).data
        assert _render(state, "done") == AllergyProfileMessageOutputSerializer(
            {**AllergyProfileOutputSerializer(state).data, "message": "done"}).data


def _orm_compilations():
    """Counts the ORM's query compilations (SELECT, INSERT, UPDATE) made while it is active."""
    from unittest import mock

    from django.db.models.sql import compiler

    return [mock.patch.object(klass, "execute_sql", autospec=True, side_effect=klass.execute_sql)
            for klass in (compiler.SQLCompiler, compiler.SQLInsertCompiler, compiler.SQLUpdateCompiler)]


def test_put_compiles_no_orm_query_and_sends_its_writes_in_one_pipeline(auth_client, verified_user) -> None:
    """PUT's statements are written by hand: the token, the locked read and the update, the history row and the
    outbox row; on PostgreSQL the token is read by the locked update's statement, and everything waits for the
    server twice (that statement's answer, the end of the pipeline) instead of once per statement."""
    from contextlib import ExitStack

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from allergies.models import AllergyRevision

    auth_client.put(URL, BODY, format="json")  # the token's first use is recorded (a write at most every few minutes)
    sent: list[tuple[str, bool]] = []

    def record(execute, sql, params, many, context):
        pgconn = getattr(context["connection"].connection, "pgconn", None)  # psycopg 3 (PostgreSQL) only
        verb = sql.split(" ", 1)[0]
        if verb not in ("SAVEPOINT", "RELEASE"):  # the test's own transaction makes BEGIN/COMMIT savepoints
            sent.append((verb, pgconn is not None and pgconn.pipeline_status != 0))
        return execute(sql, params, many, context)

    with ExitStack() as stack:
        compiled = [stack.enter_context(patch) for patch in _orm_compilations()]
        captured = stack.enter_context(CaptureQueriesContext(connection))
        stack.enter_context(connection.execute_wrapper(record))
        response = auth_client.put(URL, {"confirmed": ["milk"], "severity": {"milk": "severe"}}, format="json")
    assert response.status_code == 200 and response.json()["revision"] == 2
    assert sum(patch.call_count for patch in compiled) == 0
    if connection.vendor == "postgresql":  # the token, the locked read and the update are one statement (CTEs)
        assert sent == [("WITH", True), ("INSERT", True), ("INSERT", True)]
        assert len(captured.captured_queries) == 5  # with BEGIN and COMMIT
    else:
        assert sent == [("SELECT", False), ("SELECT", False), ("UPDATE", False), ("INSERT", False), ("INSERT", False)]
        assert len(captured.captured_queries) == 7
    revision = AllergyRevision.objects.get(user=verified_user, revision=2)
    assert revision.changes["added"] == [{"allergen": "milk", "list": "confirmed", "severity": "severe"}]
    assert OutboxEvent.objects.filter(uid=verified_user.uid, data={"revision": 2}).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_put_waits_for_the_database_twice(auth_client, verified_user) -> None:
    """In its own transaction (as under gunicorn): the token read in the locked update; the history and outbox
    rows with the end of the transaction, and 3 statements in all: no BEGIN, no COMMIT (project.rawsql.
    atomic_pipeline's implicit transaction). Counted as bench/queries.py counts them."""
    from unittest import mock

    import psycopg
    from django.db import connection

    from bench.queries import _round_trips

    auth_client.put(URL, BODY, format="json")  # the token's first use is recorded (a write at most every few minutes)
    sent: list[str] = []
    real_execute = psycopg.Cursor.execute

    def execute(self, query, *args, **kwargs):
        sent.append(str(query).split(" ", 1)[0])
        return real_execute(self, query, *args, **kwargs)

    with _round_trips() as waits, mock.patch.object(psycopg.Cursor, "execute", execute):
        response = auth_client.put(URL, {"confirmed": ["milk"], "severity": {"milk": "severe"}}, format="json")
    assert response.status_code == 200 and response.json()["revision"] == 2
    assert waits == [2]
    assert sent == ["WITH", "INSERT", "INSERT"]
    assert not connection.in_atomic_block and connection.get_autocommit()
    assert OutboxEvent.objects.filter(uid=verified_user.uid, data={"revision": 2}).count() == 1


@pytest.mark.parametrize("change", UNUSABLE)
def test_put_refuses_a_token_revoked_just_before_and_writes_nothing(api_client, verified_user, issued_token,
                                                                     change) -> None:
    """A valid body is written with the token's read (services.allergy_profile_replace_authenticated): a token
    revoked, expired or whose user was deactivated just before is still refused by the very next PUT."""
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {issued_token.raw}")
    assert api_client.put(URL, BODY, format="json").status_code == 200
    make_unusable(change, verified_user, issued_token)
    response = api_client.put(URL, {"confirmed": ["milk"], "severity": {"milk": "severe"}}, format="json")
    assert response.status_code == 401 and response.json()["code"] == "invalid_token"
    assert selectors.allergy_profile_get(user=verified_user).revision == 1
    assert OutboxEvent.objects.filter(uid=verified_user.uid).count() == 1


@pytest.mark.parametrize("raw", ["not json", "[]", '{"confirmed": "milk"}', '{"confirmed": ["milk"]}'])
def test_put_answers_401_before_looking_at_a_bad_body(api_client, unusable_tokens, raw: str) -> None:
    """Unparsable, ill-formed or invalid (no severity): with a token that is not usable, still 401, as when the
    body was read only after authentication."""
    for token in unusable_tokens.values():
        api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        response = api_client.put(URL, raw, content_type="application/json")
        assert response.status_code == 401 and response.json()["code"] == "invalid_token"


def test_put_with_an_unparsable_body_answers_the_parsers_error(auth_client) -> None:
    response = auth_client.put(URL, "not json", content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "parse_error"


def test_a_throttle_on_put_still_refuses_before_the_write(auth_client, verified_user, monkeypatch) -> None:
    """The write goes with the authentication only when nothing else (throttle, other permission) could refuse
    the request after it: a throttle added to the view still refuses before anything is written."""
    from rest_framework.throttling import BaseThrottle

    from allergies.views import AllergyProfileView

    class Refuse(BaseThrottle):
        def allow_request(self, request, view) -> bool:
            return False

    monkeypatch.setattr(AllergyProfileView, "throttle_classes", [Refuse])
    response = auth_client.put(URL, BODY, format="json")
    assert response.status_code == 429 and {"detail", "code"} <= set(response.json())
    assert selectors.allergy_profile_get(user=verified_user).revision == 0
    assert not OutboxEvent.objects.filter(uid=verified_user.uid).exists()
