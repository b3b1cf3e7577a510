from django.conf import settings
from django.db import models

from allergies.contract import allergy_flags_for


class AllergyProfile(models.Model):
    """The user's allergy profile: the backend's source of truth, copied to the Agent by events.

    `revision` counts changes (PUT or DELETE); `synced_revision` is the newest revision the
    Agent is known to hold. A delivery attempt that fails records `sync_failed_at` and
    `sync_last_error`; a new revision clears `sync_failed_at` (it has not been tried yet).
    `sync_verifying` is set while an Agent call of unknown outcome is being read back
    (agent_bridge.verification): the profile is not shown `synced` meanwhile.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="allergy_profile"
    )
    confirmed = models.JSONField(default=list, blank=True)
    intolerances = models.JSONField(default=list, blank=True)
    severity = models.JSONField(default=dict, blank=True)
    revision = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)
    synced_revision = models.PositiveIntegerField(default=0)
    sync_last_error = models.TextField(blank=True, default="")
    sync_failed_at = models.DateTimeField(null=True, blank=True)
    # Written by agent_bridge.verification: the Agent's copy read back and compared with ours.
    sync_verified_at = models.DateTimeField(
        null=True, blank=True, help_text="When the Agent's copy of this user was last read back equal to ours."
    )
    sync_verifying = models.BooleanField(
        default=False, help_text="An Agent call's outcome was unknown; its read-back is not finished."
    )

    def __str__(self) -> str:
        return f"allergy profile of user {self.user_id} (revision {self.revision})"

    @property
    def allergy_flags(self) -> list[str]:
        """The sorted union of confirmed allergens and intolerances, as the Agent computes it."""
        return allergy_flags_for(self.confirmed, self.intolerances)


class AllergyRevision(models.Model):
    """One revision of the allergy profile, kept as a food-safety record (GET /api/allergies/history/).

    `changes` says what the revision changed, by list ("confirmed" or "intolerances"):
    {"added": [{"allergen", "list", "severity"}], "removed": [{"allergen", "list", "severity"}],
    "severity_changed": [{"allergen", "list", "old_severity", "new_severity"}]}; an allergen moved between the
    lists is removed from one and added to the other. `session_id` and `session_device` name
    the session (AuthToken) that made it; null for changes made outside a session (admin,
    commands). Deleted with the account (cascade) and after ALLERGY_HISTORY_RETENTION_DAYS.
    """

    # No index of its own: the unique (user, revision) constraint's index leads with user_id and serves every read
    # and cascade by user; a second one only cost every PUT its upkeep.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="allergy_revisions",
                             db_index=False)
    revision = models.PositiveIntegerField()
    created_at = models.DateTimeField()
    changes = models.JSONField(default=dict)
    # No foreign key: the record outlives the session's token (tokens are pruned sooner).
    session_id = models.BigIntegerField(null=True, blank=True)
    session_device = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "revision"], name="allergy_revision_user_revision")]
        indexes = [models.Index(fields=["created_at"], name="allergy_revision_created")]

    def __str__(self) -> str:
        return f"allergy revision {self.revision} of user {self.user_id}"
