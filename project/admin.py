"""Admin building blocks shared by the apps."""
from django.http import HttpRequest


class ReadOnlyAdminMixin:
    """For state that only services may write (so it gets its revision, event or audit): the admin
    shows it and never adds or edits it. Deleting stays as the ModelAdmin decides."""

    def has_add_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False
