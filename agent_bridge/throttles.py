"""Throttle of `GET /api/interactions/?refresh=1`: each refresh asked for is a call to the Agent."""
from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

REFRESH_SCOPE = "interactions_refresh"


def refresh_asked(request: Request) -> bool:
    return str(request.query_params.get("refresh", "")).lower() in {"1", "true", "yes"}


class InteractionsRefreshThrottle(SimpleRateThrottle):
    """Per user, counting only the requests that ask for a refresh; plain reads are never throttled."""

    scope = REFRESH_SCOPE

    def get_rate(self) -> str | None:
        if not getattr(settings, "THROTTLING_ENABLED", True):
            return None
        return settings.THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request: Request, view: object) -> str | None:
        if not refresh_asked(request) or not request.user:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}
