from django.db import models


class DeadLetter(models.Model):
    """An event that could not be delivered: a permanent failure, or retries exhausted."""

    event_id = models.UUIDField(unique=True)
    type = models.CharField(max_length=64)
    uid = models.UUIDField(null=True, blank=True)
    envelope = models.JSONField()
    attempts = models.PositiveIntegerField(default=0)
    reason = models.TextField()
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["type", "last_failed_at"], name="deadletter_type_failed"),
            models.Index(fields=["uid"], name="deadletter_uid"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"
