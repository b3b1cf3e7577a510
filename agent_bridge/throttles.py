"""Throttle of `GET /api/interactions/?refresh=1`: each refresh asked for is a call to the Agent."""
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from identity.throttles import throttle_check
from throttling.limits import Limit

REFRESH_SCOPE = "interactions_refresh"


def refresh_asked(request: Request) -> bool:
    return str(request.query_params.get("refresh", "")).lower() in {"1", "true", "yes"}


class InteractionsRefreshThrottle(BaseThrottle):
    """Per user, in the shared throttle store, counting only the requests that ask for a refresh:
    plain reads never touch the store."""

    _wait: float | None = None

    def allow_request(self, request: Request, view: object) -> bool:
        if not refresh_asked(request) or not request.user:
            return True
        self._wait = throttle_check([Limit(REFRESH_SCOPE, str(request.user.pk))])
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait
