from django.contrib import admin

from agent_bridge.models import InteractionMirror, OutboxEvent
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
        "claimed_until", "published_at", "delivered_at", "last_error", "data",
    )
    fields = readonly_fields

