"""Admin for accounts. No password hash is shown, and deleting goes through the erasure service
so the Agent forgets the user too (a plain queryset delete would skip the user.deleted event)."""
import math

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse

from identity import services, throttles
from identity.addresses import email_canonical
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


class UserAddForm(forms.ModelForm):
    password = forms.CharField(widget=forms.PasswordInput, strip=False)

    class Meta:
        model = User
        fields = ("email", "username", "is_verified", "is_staff")

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("password") and cleaned.get("email"):
            user = User(email=cleaned["email"], username=cleaned.get("username", ""))
            try:
                services.password_validate(password=cleaned["password"], user=user, field="password")
            except services.WeakPassword as exc:
                self.add_error("password", [p.message for p in exc.errors["password"]])
        return cleaned


class UserPreferencesInline(admin.StackedInline):
    model = UserPreferences
    can_delete = False
    readonly_fields = ("data", "reset_keys", "revision", "synced_revision", "updated_at")
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

    add_fields = ("email", "username", "password", "is_verified", "is_staff")

    def get_fields(self, request: HttpRequest, obj: User | None = None):
        return self.add_fields if obj is None else self.fields

    def get_form(self, request: HttpRequest, obj: User | None = None, **kwargs):
        if obj is None:
            kwargs["form"] = UserAddForm
        return super().get_form(request, obj, **kwargs)

    def get_inlines(self, request: HttpRequest, obj: User | None):
        return self.inlines if obj is not None else []

    def save_model(self, request: HttpRequest, obj: User, form: forms.ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
        else:
            # Through the service like signup, so the new user reaches the Agent.
            obj.email = email_canonical(obj.email)
            services.user_register(user=obj, password=form.cleaned_data["password"])

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
