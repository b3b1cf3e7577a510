from django.contrib import admin

from allergies import selectors
from allergies.models import AllergyProfile
from allergies.selectors import AllergyState
from project.admin import ReadOnlyAdminMixin


class SyncStateFilter(admin.SimpleListFilter):
    """The profile's sync state as the user sees it (synced / pending / failing)."""

    title = "sync state"
    parameter_name = "sync_state"

    def lookups(self, request, model_admin):
        return [(state, state) for state in (selectors.SYNC_SYNCED, selectors.SYNC_PENDING, selectors.SYNC_FAILING)]

    def queryset(self, request, queryset):
        if self.value() in dict(self.lookups(request, None)):
            return queryset.filter(selectors.allergy_profiles_in_sync_state_q(self.value()))
        return queryset


@admin.register(AllergyProfile)
class AllergyProfileAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: a change must go through allergy_profile_replace so it gets a revision and
    reaches the Agent; an edit here would do neither."""

    list_display = (
        "user", "revision", "synced_revision", "sync_state", "updated_at", "sync_failed_at", "sync_verified_at"
    )
    list_select_related = ("user",)
    search_fields = ("user__email", "=user__uid")
    list_filter = (SyncStateFilter, "sync_failed_at", "sync_verifying")
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
        "sync_verified_at",
        "sync_verifying",
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
