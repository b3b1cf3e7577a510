from django.contrib import admin

from agent_bridge.models import AgentCopy, AgentDriftCount, InteractionMirror, OutboxEvent
from project.admin import ReadOnlyAdminMixin


@admin.register(InteractionMirror)
class InteractionMirrorAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only view of the local copy of each user's Agent history (refreshed by the consumer)."""

    list_display = ("user", "item_count", "agent_total", "synced_at", "refresh_requested_at", "clear_pending")
    list_select_related = ("user",)
    search_fields = ("user__email", "=user__uid")
    list_filter = ("clear_pending",)
    readonly_fields = (
        "user",
        "item_count",
        "agent_total",
        "synced_at",
        "refresh_requested_at",
        "clear_pending",
        "items",
    )
    fields = readonly_fields

    @admin.display(description="items mirrored")
    def item_count(self, obj: InteractionMirror) -> int:
        return len(obj.items)


# --- verification of the Agent's copy (agent_bridge.verification) ---------------------------


@admin.register(AgentCopy)
class AgentCopyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: when each user's copy at the Agent was last compared, read-backs under way
    after uncertain Agent calls, and tombstones (uid only) of erased users. When a user's copy
    was last *verified equal* is on their allergy profile (`sync verified at`)."""

    list_display = ("uid", "checked_at", "read_back_chain", "read_back_since", "erased_at")
    list_filter = (("read_back_chain", admin.EmptyFieldListFilter), ("erased_at", admin.EmptyFieldListFilter))
    search_fields = ("=uid",)
    show_full_result_count = False
    ordering = ("checked_at",)
    readonly_fields = list_display
    fields = readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a tombstone is how reconciliation finds an erased user still at the Agent


@admin.register(AgentDriftCount)
class AgentDriftCountAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Drift found between the Agent's copy and ours, by kind (each one was repaired through the bus)."""

    list_display = ("kind", "count", "last_found_at")
    readonly_fields = list_display
    fields = readonly_fields


# --- the outbox (owned by the bus) -------------------------------------------------------------


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only view of the transactional outbox: what was raised and what became of it."""

    list_display = ("type", "event_id", "uid", "status", "attempts", "occurred_at", "published_at", "delivered_at")
    list_filter = ("status", "type")
    search_fields = ("=event_id", "=uid")
    show_full_result_count = False
    ordering = ("-id",)
    readonly_fields = (
        "event_id", "type", "schema", "uid", "occurred_at", "status", "attempts", "available_at", "claimed_by",
        "claimed_until", "published_at", "delivered_at", "last_error", "traceparent", "data",
    )
    fields = readonly_fields

