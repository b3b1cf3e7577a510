"""bench/queries.py counts what psycopg sends, not what Django's query log lists."""
import pytest
from django.db import transaction

from bench.queries import _sent
from identity.models import UserPreferences

_POSTGRES = (pytest.mark.postgres, pytest.mark.django_db(transaction=True))


@_POSTGRES[0]
@_POSTGRES[1]
def test_sent_lists_psycopg_begin_and_commit_of_an_orm_transaction(verified_user) -> None:
    with _sent() as sent, transaction.atomic():
        UserPreferences.objects.filter(user=verified_user).update(data={"cuisine": "thai"})
    assert [text.split(" ", 1)[0] for text in sent] == ["BEGIN", "UPDATE", "COMMIT"]


@_POSTGRES[0]
@_POSTGRES[1]
def test_sent_lists_no_begin_or_commit_for_an_implicit_atomic_pipeline(auth_client) -> None:
    """Django's query log shows BEGIN and COMMIT for this PUT; neither is sent (rawsql.atomic_pipeline)."""
    body = {"confirmed": ["milk"], "severity": {"milk": "severe"}}
    auth_client.put("/api/allergies/", body, format="json")  # the token's first use is recorded once
    with _sent() as sent:
        response = auth_client.put("/api/allergies/", {"confirmed": ["peanuts"], "severity": {"peanuts": "severe"}},
                                   format="json")
    assert response.status_code == 200
    assert [text.split(" ", 1)[0] for text in sent] == ["WITH", "INSERT", "INSERT"]


def test_the_health_checks_are_counted_apart_from_the_statements() -> None:
    from bench.queries import _without_health_checks

    sent = ["SELECT 1", 'SELECT "authtoken_token"."key"', "UPDATE x"]
    assert _without_health_checks(sent, 1) == ['SELECT "authtoken_token"."key"', "UPDATE x"]
    assert _without_health_checks(sent, 0) == sent
