"""Account flows over real processes (gunicorn, consumer, Agent double, file email backend):
email change by link, the old address's notice, a new-device mail, and the deletion notice."""
import re

import pytest

from tests.e2e.harness import wait_for
from tests.e2e.helpers import PASSWORD, create_verified_user, mails_to

pytestmark = pytest.mark.e2e

CHANGE_LINK = re.compile(r"/email-change\?token=(\S+)")
SAFARI = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile Safari/604.1"


def mail(stack, address: str, subject_part: str) -> str:
    """The body of the first mail to `address` whose subject contains `subject_part`, once sent."""
    def find():
        return next((body for subject, body in mails_to(stack.workdir / "emails", address) if subject_part in subject),
                    None)
    return wait_for(find, timeout=60, what=f"a mail '{subject_part}' to {address}")


def test_email_change_new_device_and_deletion_mails(stack) -> None:
    user = create_verified_user(stack, email="ada@example.com")

    change = stack.api("POST", "/api/email/change/", token=user.token,
                       json={"new_email": "ada.new@example.com", "password": PASSWORD})
    assert change.status_code == 202, change.text
    token = CHANGE_LINK.search(mail(stack, "ada.new@example.com", "Confirm your new"))[1]
    assert stack.api("GET", "/api/me/", token=user.token).json()["email"] == "ada@example.com"

    assert stack.api("POST", "/api/email/change/confirm/", json={"token": token}).status_code == 200
    assert stack.api("POST", "/api/email/change/confirm/", json={"token": token}).status_code == 400
    assert "was changed" in mail(stack, "ada@example.com", "email address of your Kairos account was changed")
    assert stack.api("GET", "/api/me/", token=user.token).json()["email"] == "ada.new@example.com"

    login = stack.api("POST", "/api/login/", json={"email": "ada.new@example.com", "password": PASSWORD},
                      headers={"User-Agent": SAFARI})
    assert login.status_code == 200, login.text
    assert "Mobile Safari on iOS" in mail(stack, "ada.new@example.com", "New sign-in")
    sessions = stack.api("GET", "/api/sessions/", token=user.token).json()["sessions"]
    assert sessions[0]["device"] == "Mobile Safari on iOS"
    assert [s["current"] for s in sessions] == [False, True]

    deleted = stack.api("DELETE", "/api/account/", token=user.token, json={"password": PASSWORD})
    assert deleted.status_code == 204, deleted.text
    assert "was deleted" in mail(stack, "ada.new@example.com", "was deleted")
    stack.wait_drained()
    left = stack.manage("shell", "-c", "from identity.models import MailNotice; print(MailNotice.objects.count())")
    assert left.stdout.strip().splitlines()[-1] == "0"
