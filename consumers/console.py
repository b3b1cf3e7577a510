"""The operator's page in the admin (`/admin/operations/`): the bus at a glance.

Backlog and oldest undelivered age by event type, dead letters by type and reason with a replay
of each group, the consumers at work, and allergy profiles by sync state (each linking to the
admin list it summarises). Staff with the view permission on dead letters may look; replaying
needs the delete permission, as the dead-letter list's own replay action does.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.admin import site
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods

from consumers import operations, services

VIEW_PERMISSION = "consumers.view_deadletter"
REPLAY_PERMISSION = "consumers.delete_deadletter"


@dataclass(frozen=True)
class _Link:
    text: str
    url: str


def _age(seconds: float) -> str:
    """3 s, 4 min, 2.5 h, 3.1 d: what an operator reads at a glance."""
    for limit, unit, size in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{seconds / size:.0f} {unit}" if unit != "h" else f"{seconds / size:.1f} {unit}"
    return f"{seconds / 86400:.1f} d"


def _changelist(model: str, **filters: str) -> str:
    return reverse(f"admin:{model}_changelist") + ("?" + urlencode(filters) if filters else "")


@require_http_methods(["GET", "POST"])
def operator_console(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    if request.method == "POST":
        return _replay_group(request)

    from agent_bridge.verification import verification_status_get
    from allergies.selectors import allergy_profile_sync_counts

    figures = operations.bus_figures_get()
    context = {
        **site.each_context(request),
        "title": "Operations",
        "figures": figures,
        "types": [
            {"row": row, "oldest": _age(row.oldest_age_seconds),
             "link": _changelist("agent_bridge_outboxevent", type=row.type)}
            for row in figures.types
        ],
        "oldest": _age(figures.oldest_age_seconds),
        "dead_letters": [
            {"group": group, "link": _changelist("consumers_deadletter", type=group.type)}
            for group in figures.dead_letters
        ],
        "can_replay": request.user.has_perm(REPLAY_PERMISSION),
        "consumers": operations.consumers_at_work(),
        "partitions": operations.partitions_get(),
        "verification": verification_status_get(),
        "sync": [
            _Link(f"{state}: {count}", _changelist("allergies_allergyprofile", sync_state=state))
            for state, count in allergy_profile_sync_counts().items()
        ],
    }
    return TemplateResponse(request, "admin/consumers/operator_console.html", context)


def _replay_group(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(REPLAY_PERMISSION):
        raise PermissionDenied
    event_type, reason = request.POST.get("type", ""), request.POST.get("reason", "")
    ids = operations.dead_letter_ids_in_group(event_type=event_type, reason=reason)
    if not ids:
        messages.warning(request, f"No dead letters of {event_type} with reason {reason!r} are left.")
    else:
        report = services.dead_letter_replay(ids=ids)
        level = messages.WARNING if report.failed else messages.SUCCESS
        text = (
            f"{event_type} / {reason}: replayed {report.replayed}, skipped {report.skipped} as stale, "
            f"failed {report.failed}."
        )
        if report.aborted:
            text += f" Stopped early: {report.aborted}."
        messages.add_message(request, level, text)
    return HttpResponseRedirect(reverse("operator-console"))


#: The URL pattern's view: the admin's login, staff check and CSRF, then the page.
operator_console_view = site.admin_view(operator_console)
