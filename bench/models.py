"""Bench-only tables: the idiomatic DRF peer's allergy profile and the seed-000 synchronous design's."""
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


class PeerAllergyProfile(models.Model):
    """The idiomatic DRF peer's allergy profile: what a plain DRF service would store."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True,
                                related_name="bench_peer_allergy")
    confirmed = models.JSONField(default=list, blank=True)
    intolerances = models.JSONField(default=list, blank=True)
    severity = models.JSONField(default=dict, blank=True)
    revision = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"PeerAllergyProfile({self.user_id})"
