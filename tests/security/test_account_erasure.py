"""Erasure of the accounts tables: after DELETE /api/account/, the tables of issue 15 (sessions'
labels, email-change requests, mail notices, allergy history, notification settings) hold nothing
of the user; the one exception, the deletion notice's address, lives until that mail is sent or
MAIL_NOTICE_TTL_HOURS have passed."""
from datetime import timedelta

import pytest
from django.core import serializers
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from allergies.models import AllergyRevision
from identity.models import AuthToken, EmailChangeRequest, MailNotice, User

pytestmark = [pytest.mark.security, pytest.mark.django_db]

NEW_TABLES = (AuthToken, EmailChangeRequest, MailNotice, AllergyRevision, User)
FIREFOX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
SAFARI = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile Safari/604.1"


def table_dump() -> str:
    return "".join(serializers.serialize("json", model.objects.all()) for model in NEW_TABLES)


@pytest.fixture
def full_account(account, clear_cache):
    """The sweep's account with a row in every table of issue 15."""
    client = APIClient(HTTP_USER_AGENT=SAFARI, REMOTE_ADDR="203.0.113.5")
    client.credentials(HTTP_AUTHORIZATION=f"Token {account.token}")
    # A second login from a new device: a session label and a new-device notice.
    body = {"email": account.email, "password": account.password}
    assert APIClient(HTTP_USER_AGENT=FIREFOX).post("/api/login/", body, format="json").status_code == 200
    client.put("/api/allergies/", {"confirmed": ["peanuts"], "severity": {"peanuts": "anaphylactic"}}, format="json")
    client.put("/api/allergies/", {"intolerances": ["lactose"], "severity": {"lactose": "intolerance"}}, format="json")
    change = {"new_email": "pending-address@example.com", "password": account.password}
    assert client.post("/api/email/change/", change, format="json").status_code == 202
    client.patch("/api/notifications/", {"new_device_login": False}, format="json")
    assert MailNotice.objects.filter(uid=account.uid).exists()
    assert AllergyRevision.objects.count() == 2 and EmailChangeRequest.objects.count() == 1
    return account, client


def test_deleting_the_account_leaves_nothing_of_it_in_the_new_tables(full_account, deliver_mail) -> None:
    account, client = full_account
    devices = list(AuthToken.objects.values_list("device_label", "network"))

    assert client.delete("/api/account/", {"password": account.password}, format="json").status_code == 204

    # Before the deletion notice goes out: only its row, holding only the address and the uid.
    assert not AuthToken.objects.exists()
    assert not EmailChangeRequest.objects.exists()
    assert not AllergyRevision.objects.exists()
    assert not User.objects.filter(uid=account.uid).exists()
    [notice] = MailNotice.objects.all()
    assert (notice.kind, notice.email, notice.details) == ("account_deleted", account.email, {})

    deliver_mail()

    dump = table_dump()
    for trace in (str(account.uid), account.email, "pending-address@example.com", "peanuts", "lactose",
                  *(label for label, _ in devices), *(network for _, network in devices if network)):
        assert trace not in dump, trace
    assert {model.__name__: model.objects.count() for model in NEW_TABLES} == dict.fromkeys(
        (model.__name__ for model in NEW_TABLES), 0
    )


def test_an_unsent_deletion_notice_is_pruned(full_account) -> None:
    account, client = full_account
    client.delete("/api/account/", {"password": account.password}, format="json")
    MailNotice.objects.update(created_at=timezone.now() - timedelta(hours=73))

    call_command("prune_accounts", stdout=open("/dev/null", "w"))  # noqa: SIM115

    assert not MailNotice.objects.exists()
