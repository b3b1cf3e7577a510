"""Reads of the identity app."""
import uuid

from identity.models import User


def user_exists(*, uid: uuid.UUID) -> bool:
    return User.objects.filter(uid=uid).exists()


def user_get_by_uid(*, uid: uuid.UUID) -> User | None:
    return User.objects.filter(uid=uid).first()
