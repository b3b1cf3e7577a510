from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from consumers import services
from consumers.models import DeadLetter
from project.admin import ReadOnlyAdminMixin

# The index links to the operator's page (consumers/console.py).
admin.site.index_template = "admin/kairos_index.html"


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Events the consumer gave up on, with why; replayable from here or `replay_dead_letters`."""

    list_display = ("type", "event_id", "uid", "attempts", "short_reason", "first_failed_at", "last_failed_at")
    list_filter = ("type", "last_failed_at")
    search_fields = ("=event_id", "=uid", "reason")
    ordering = ("-last_failed_at",)
    readonly_fields = ("event_id", "type", "uid", "attempts", "reason", "first_failed_at", "last_failed_at",
                       "envelope")
    fields = readonly_fields
    actions = ("replay_selected",)

    @admin.display(description="reason")
    def short_reason(self, obj: DeadLetter) -> str:
        return obj.reason if len(obj.reason) <= 120 else obj.reason[:117] + "..."

    @admin.action(description="Replay the selected dead letters", permissions=["delete"])
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        report = services.dead_letter_replay(ids=list(queryset.values_list("pk", flat=True)))
        level = messages.WARNING if report.failed else messages.SUCCESS
        text = f"Replayed {report.replayed}, skipped {report.skipped} as stale, failed {report.failed}."
        if report.aborted:
            text += f" Stopped early: {report.aborted}."
        self.message_user(request, text, level)
