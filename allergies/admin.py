from django.contrib import admin

from allergies.models import AllergyProfile
from allergies.selectors import AllergyState
from project.admin import ReadOnlyAdminMixin


@admin.register(AllergyProfile)
class AllergyProfileAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: a change must go through allergy_profile_replace so it gets a revision and
    reaches the Agent; an edit here would do neither."""

    list_display = ("user", "revision", "synced_revision", "sync_state", "updated_at", "sync_failed_at")
    list_select_related = ("user",)
    search_fields = ("user__email", "=user__uid")
    list_filter = ("sync_failed_at",)
    readonly_fields = (
        "user",
        "confirmed",
        "intolerances",
        "severity",
        "allergy_flags",
        "revision",
        "updated_at",
        "synced_revision",
        "sync_state",
        "sync_last_error",
        "sync_failed_at",
    )
    fields = readonly_fields

    @admin.display(description="sync state")
    def sync_state(self, obj: AllergyProfile) -> str:
        return AllergyState.of(obj).sync_state

    @admin.display(description="allergy flags")
    def allergy_flags(self, obj: AllergyProfile) -> str:
        return ", ".join(obj.allergy_flags)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
