from django.db import models

from agent_bridge.delivery import Cause


class DeadLetter(models.Model):
    """An event that could not be delivered: a permanent failure, or retries exhausted.

    Written only by agent_bridge.outbox (the owner of delivery state).
    """

    event_id = models.UUIDField(unique=True)
    type = models.CharField(max_length=64)
    uid = models.UUIDField(null=True, blank=True)
    envelope = models.JSONField()
    attempts = models.PositiveIntegerField(default=0)
    reason = models.TextField()
    cause = models.CharField(max_length=32, choices=[(c.value, c.name.lower()) for c in Cause], blank=True, default="")
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["type", "last_failed_at"], name="deadletter_type_failed"),
            models.Index(fields=["uid"], name="deadletter_uid"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"
