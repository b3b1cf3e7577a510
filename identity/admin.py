"""Admin for accounts. No password hash is shown, and deleting goes through the erasure service
so the Agent forgets the user too (a plain queryset delete would skip the user.deleted event)."""
import math

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse

from identity import services, throttles
from identity.models import AuthToken, User, UserPreferences
from throttling.clients import client_address
from throttling.limits import Limit


def _refusal(limits: list[Limit]) -> HttpResponse | None:
    """The JSON answer of a refused admin request (429, or 503 when the store is down); None: go on."""
    try:
        wait = throttles.throttle_check(limits)
    except throttles.ThrottleUnavailable as exc:
        return JsonResponse({"detail": str(exc.detail), "code": exc.default_code}, status=exc.status_code)
    if wait is None:
        return None
    seconds = math.ceil(wait)
    response = JsonResponse({"detail": f"Too many attempts. Try again in {seconds} seconds.", "code": "throttled"})
    response.status_code = 429
    response["Retry-After"] = str(seconds)
    return response


def admin_login(request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
    """Django's admin login behind the login throttles: the same counters as POST /api/login/ (one
    budget per address and per account, whichever door is used). Routed before admin.site.urls."""
    if request.method == "POST":
        address = client_address(request)
        limits = [Limit("login", address)]
        limits += throttles.email_limits("login", address=address, email=request.POST.get("username"))
        if (refused := _refusal(limits)) is not None:
            return refused
    return admin.site.login(request, extra_context)


def _admin_password_change(request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
    # It re-confirms the old password: a stolen admin session must not be a fast password oracle.
    if request.method == "POST" and (refused := _refusal([Limit("reconfirm", str(request.user.pk))])) is not None:
        return refused
    return admin.site.password_change(request, extra_context)


# Behind the admin's own staff check, as admin.site.urls wraps it; routed before admin.site.urls.
admin_password_change = admin.site.admin_view(_admin_password_change)


class UserPreferencesInline(admin.StackedInline):
    model = UserPreferences
    can_delete = False
    readonly_fields = ("data", "revision", "synced_revision", "updated_at")
    extra = 0


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = ("email", "username", "uid", "is_verified", "is_active", "date_joined")
    search_fields = ("email", "=uid")
    list_filter = ("is_verified", "is_active", "is_staff")
    fields = (
        "uid", "email", "username", "is_verified", "is_active", "is_staff", "is_superuser",
        "groups", "user_permissions", "date_joined", "last_login",
    )  # fmt: skip
    readonly_fields = ("uid", "date_joined", "last_login")
    filter_horizontal = ("groups", "user_permissions")
    inlines = [UserPreferencesInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Accounts start at signup (or createsuperuser), which also creates them at the Agent.
        return False

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        services.user_erase(user=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for user in queryset:
            services.user_erase(user=user)


@admin.register(AuthToken)
class AuthTokenAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "created_at", "expires_at", "revoked_at", "last_used_at")
    list_filter = ("revoked_at",)
    search_fields = ("user__email", "=user__uid")
    list_select_related = ("user",)
    exclude = ("key_hash",)
    readonly_fields = ("user", "created_at", "expires_at", "last_used_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a token's secret is shown once, at login; the admin could never show it
