"""identity.models: the manager's two ways of creating users, and User.clean. The
canonical form in lookups, the admin login and the admin form: tests/security/test_email_canonical.py;
`createsuperuser` queueing the user for the Agent: test_admin.py."""
import pytest
from django.core.exceptions import ValidationError

from agent_bridge.models import OutboxEvent
from identity.addresses import EmailNotCanonical
from identity.models import User

pytestmark = pytest.mark.django_db


def test_create_user_stores_the_canonical_address_and_queues_nothing(password) -> None:
    """The fixtures' way of making users: no event, so a test sees only the events it caused."""
    user = User.objects.create_user("Ada@\uff45xample.com", password, username="ada")

    user.refresh_from_db()
    assert user.email == "ada@example.com"
    assert user.check_password(password) and not user.is_verified
    assert not OutboxEvent.objects.exists()


def test_create_user_refuses_an_address_without_a_canonical_form(password) -> None:
    with pytest.raises(EmailNotCanonical):
        User.objects.create_user("m\u00fcller@example.com", password, username="m")
    assert not User.objects.exists()


def test_create_superuser_makes_a_verified_staff_superuser_named_after_the_address() -> None:
    user = User.objects.create_superuser("root@EXAMPLE.com", "root-passphrase-for-tests-42")

    user.refresh_from_db()
    assert (user.email, user.username) == ("root@example.com", "root")
    assert user.is_staff and user.is_superuser and user.is_verified and user.is_active
    assert user.check_password("root-passphrase-for-tests-42")


def test_clean_refuses_an_address_without_a_canonical_form_on_the_email_field() -> None:
    """The admin's change form shows it beside the field, instead of failing on save."""
    user = User(email="\u0131da@example.com", username="x")
    with pytest.raises(ValidationError) as refused:
        user.clean()
    assert set(refused.value.message_dict) == {"email"}
