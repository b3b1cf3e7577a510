"""manage.py prune_accounts: identity's retention (allergy history retention: allergies/tests/test_history.py)."""
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from identity import services
from identity.models import AuthToken, EmailChangeRequest, MailNotice

pytestmark = pytest.mark.django_db


def prune() -> str:
    out = StringIO()
    call_command("prune_accounts", stdout=out)
    return out.getvalue()


def test_expired_email_change_requests_are_pruned(verified_user, password, settings) -> None:
    services.email_change_request(user=verified_user, new_email="a@example.com", password=password)
    EmailChangeRequest.objects.update(created_at=timezone.now() - settings.EMAIL_CHANGE_TTL - timedelta(seconds=1))
    assert "1 email-change requests" in prune()
    assert not EmailChangeRequest.objects.exists()


def test_a_live_email_change_request_is_kept(verified_user, password) -> None:
    services.email_change_request(user=verified_user, new_email="a@example.com", password=password)
    prune()
    assert EmailChangeRequest.objects.count() == 1


def test_unsent_notices_die_after_their_ttl(verified_user, settings) -> None:
    old = MailNotice.objects.create(uid=verified_user.uid, kind="new_device_login")
    fresh = MailNotice.objects.create(uid=verified_user.uid, kind="new_device_login")
    MailNotice.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(hours=settings.MAIL_NOTICE_TTL_HOURS, seconds=1)
    )
    prune()
    assert list(MailNotice.objects.values_list("pk", flat=True)) == [fresh.pk]


def test_tokens_ended_longer_than_the_device_memory_are_pruned(verified_user, settings) -> None:
    long_ago = timezone.now() - timedelta(days=settings.NEW_DEVICE_MEMORY_DAYS + 1)
    ended = services.auth_token_issue(user=verified_user).token
    live = services.auth_token_issue(user=verified_user).token
    recently_ended = services.auth_token_issue(user=verified_user).token
    AuthToken.objects.filter(pk=ended.pk).update(created_at=long_ago, expires_at=long_ago)
    AuthToken.objects.filter(pk=recently_ended.pk).update(revoked_at=timezone.now())
    prune()
    assert set(AuthToken.objects.values_list("pk", flat=True)) == {live.pk, recently_ended.pk}
