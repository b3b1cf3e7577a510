"""Writes of the identity app. The only place that sends identity's domain signals."""
from django.contrib.auth.password_validation import validate_password
from django.db import transaction

from identity import signals
from identity.models import User


def user_create(*, email: str, username: str, password: str) -> User | None:
    """Create an unverified user and queue its Agent profile and verification email.

    When the email is taken, nothing is created and the owner is emailed instead, so the
    caller answers both cases alike (no user enumeration). Returns the new user or None.
    """
    email = User.objects.normalize_email(email).lower()
    with transaction.atomic():
        existing = User.objects.filter(email__iexact=email).first()
        if existing is not None:
            signals.email_requested.send(sender=User, uid=existing.uid, kind="account_exists")
            return None
        user = User(email=email, username=username)
        validate_password(password, user)
        user.set_password(password)
        user.save()
        signals.user_registered.send(sender=User, user=user)
        signals.email_requested.send(sender=User, uid=user.uid, kind="verify")
    return user
