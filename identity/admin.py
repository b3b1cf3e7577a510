from django.contrib import admin

from identity.models import User


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = ("email", "username", "uid", "is_verified", "is_active", "date_joined")
    search_fields = ("email", "uid")
    list_filter = ("is_verified", "is_active", "is_staff")
    readonly_fields = ("uid", "date_joined", "last_login")
    exclude = ("password",)
