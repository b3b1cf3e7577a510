"""Per-user sync leases: one consumer at a time talks to the Agent about a given user."""
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agent_bridge.models import UserSyncLease

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


class LeaseBusy(Exception):
    """Another consumer is working on this user; try the event again shortly."""


def _try_acquire(uid: uuid.UUID, owner: str) -> bool:
    now = timezone.now()
    with transaction.atomic():
        UserSyncLease.objects.get_or_create(uid=uid)
        taken = UserSyncLease.objects.filter(
            Q(owner="") | Q(expires_at__lt=now) | Q(owner=owner), uid=uid
        ).update(owner=owner, expires_at=now + timedelta(seconds=settings.BUS_USER_LEASE_SECONDS))
    return taken == 1


@contextmanager
def user_lease(uid: uuid.UUID | str, *, wait_seconds: float | None = None) -> Iterator[None]:
    """Hold the user's lease for the block; raise LeaseBusy if it stays taken for `wait_seconds`."""
    uid = uuid.UUID(str(uid))
    owner = f"{WORKER_ID}:{uuid.uuid4().hex[:8]}"
    wait = settings.BUS_USER_LEASE_SECONDS if wait_seconds is None else wait_seconds
    deadline = time.monotonic() + wait
    while not _try_acquire(uid, owner):
        if time.monotonic() >= deadline:
            raise LeaseBusy(f"user {uid} is being synced by another consumer")
        time.sleep(0.05)
    try:
        yield
    finally:
        UserSyncLease.objects.filter(uid=uid, owner=owner).update(owner="", expires_at=None)


def user_lease_forget(*, uid: uuid.UUID | str) -> None:
    """Drop the lease row of a user erased at the Agent."""
    UserSyncLease.objects.filter(uid=uid).delete()
