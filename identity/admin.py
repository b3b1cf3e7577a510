"""Admin for accounts. No password hash is shown, and deleting goes through the erasure service
so the Agent forgets the user too (a plain queryset delete would skip the user.deleted event)."""
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from identity import services
from identity.models import AuthToken, User, UserPreferences


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
    list_display = ("id", "user", "device_label", "network", "created_at", "expires_at", "revoked_at", "last_used_at")
    list_filter = ("revoked_at",)
    search_fields = ("user__email", "=user__uid")
    list_select_related = ("user",)
    exclude = ("key_hash",)
    readonly_fields = ("user", "device_label", "network", "created_at", "expires_at", "last_used_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a token's secret is shown once, at login; the admin could never show it
