import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from agent_bridge.events import Envelope, make_envelope

# PostgreSQL NOTIFY channel on which a trigger (migration 0005) announces pending rows;
# agent_bridge.transports.notify listens on it.
OUTBOX_NOTIFY_CHANNEL = "kairos_outbox"


class OutboxEvent(models.Model):
    """An event written in the same transaction as the change it reports.

    AMQP mode: pending → published (relay, broker confirmed) → delivered | dead.
    Embedded mode: the consumer claims pending rows itself: pending → delivered | dead.
    Every transition is written by agent_bridge.outbox, and nowhere else.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        PUBLISHED = "published"
        DELIVERED = "delivered"
        DEAD = "dead"

    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    type = models.CharField(max_length=64)
    schema = models.PositiveSmallIntegerField(default=1)
    uid = models.UUIDField(null=True, blank=True)
    occurred_at = models.DateTimeField(default=timezone.now)
    data = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Delivery attempts that failed so far.")
    available_at = models.DateTimeField(default=timezone.now, help_text="Embedded bus: not before this time.")
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    claimed_until = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    # W3C trace context of the request that raised the event (project.tracing), carried to the Agent.
    # Nullable: NULL is "raised outside any trace", and adding it rewrites no existing row.
    traceparent = models.CharField(max_length=55, null=True, blank=True)  # noqa: DJ001

    class Meta:
        indexes = [
            models.Index(fields=["status", "available_at"], name="outbox_status_available"),
            models.Index(fields=["uid"], name="outbox_uid"),
            models.Index(fields=["type", "status"], name="outbox_type_status"),
            models.Index(fields=["status", "delivered_at"], name="outbox_status_delivered"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id} ({self.status})"

    @property
    def envelope(self) -> Envelope:
        envelope = make_envelope(
            event_id=self.event_id, event_type=self.type, occurred_at=self.occurred_at, uid=self.uid, data=self.data
        )
        # The version `data` was written in: a row written before its payload's schema changed
        # still says its own, not the code's current one.
        envelope["schema"] = self.schema
        return envelope


class UserSyncLease(models.Model):
    """Serialises the Agent calls made for one user, whatever the number of consumers.

    A consumer holds the lease while it reads the user's latest state and sends it, so an
    older state can never overwrite a newer one at the Agent. A crashed holder's lease expires.
    """

    uid = models.UUIDField(primary_key=True)
    owner = models.CharField(max_length=64, blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"lease {self.uid} ({self.owner or 'free'})"


class PartitionLease(models.Model):
    """Which consumer owns a RabbitMQ partition queue (`<prefix>.work.<n>`).

    The broker already gives each partition one active consumer (`x-single-active-consumer`);
    this row fences a hand-over: a consumer that lost its connection still owns the partition
    until its handler in hand has finished, so the next owner can never overtake it. Taken once
    per connection and renewed while held, never per event.
    """

    name = models.CharField(max_length=200, primary_key=True)
    owner = models.CharField(max_length=64, blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"partition {self.name} ({self.owner or 'free'})"


class InteractionMirror(models.Model):
    """The local copy of a user's interaction history at the Agent (DESIGN §7).

    Views serve this copy and never call the Agent. `synced_at` dates the copy;
    `refresh_requested_at` marks an outstanding `interactions.refresh_requested` event (at most
    one per user); `clear_pending` is set while an `interactions.clear_requested` event is not
    yet done, so a refresh fetched before the clear cannot bring the old history back.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="interaction_mirror"
    )
    items = models.JSONField(default=list, blank=True, help_text="Newest first, as the Agent lists them.")
    agent_total = models.PositiveIntegerField(default=0, help_text="The Agent's count (may exceed the items kept).")
    synced_at = models.DateTimeField(null=True, blank=True)
    refresh_requested_at = models.DateTimeField(null=True, blank=True)
    clear_pending = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"interaction mirror of user {self.user_id} ({len(self.items)} items)"


class AgentCopy(models.Model):
    """What this backend knows about the Agent's copy of one user (owned by agent_bridge.verification).

    Keyed by uid alone, with no link to the user row and no personal data, so it outlives an
    account deletion as a tombstone (`erased_at`): the Agent has no list endpoint, so the
    tombstones are how reconciliation finds users erased here but still held there.
    """

    uid = models.UUIDField(primary_key=True)
    checked_at = models.DateTimeField(
        null=True, blank=True, help_text="Last comparison with the Agent's copy (reconciliation goes oldest first)."
    )
    read_back_chain = models.UUIDField(
        null=True, blank=True, help_text="The read-back under way after an uncertain Agent call (empty: none)."
    )
    read_back_since = models.DateTimeField(null=True, blank=True)
    erased_at = models.DateTimeField(null=True, blank=True, help_text="Tombstone: the account was deleted here.")

    class Meta:
        indexes = [
            models.Index(fields=["checked_at"], name="agentcopy_checked"),
            models.Index(fields=["erased_at"], name="agentcopy_erased"),
        ]

    def __str__(self) -> str:
        return f"agent copy {self.uid}{' (erased)' if self.erased_at else ''}"


class AgentDriftCount(models.Model):
    """How often each kind of drift between the Agent's copy and ours was found (and repaired)."""

    class Kind(models.TextChoices):
        MISSING = "missing", "user missing at the Agent"
        ALLERGIES = "allergies", "allergies differ"
        PREFERENCES = "preferences", "preferences differ (as merged)"
        LEFTOVER = "leftover", "user erased here still at the Agent"

    kind = models.CharField(max_length=16, choices=Kind.choices, primary_key=True)
    count = models.PositiveBigIntegerField(default=0)
    last_found_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.kind}: {self.count}"
