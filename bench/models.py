"""The local allergy table of the seed-000 synchronous design (bench only)."""
from django.conf import settings
from django.db import models


class SyncAllergyProfile(models.Model):
    """Seed 000 §6.1 `UserAllergyProfile`: the local copy the synchronous view saves before calling the Agent."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="bench_sync_allergy")
    confirmed = models.JSONField(default=list)
    intolerances = models.JSONField(default=list)
    severity = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"SyncAllergyProfile({self.user_id})"
