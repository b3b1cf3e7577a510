"""Request ids and one log line per API request.

An incoming `X-Request-ID` is kept when it looks like an id (so a proxy's or the frontend's id
follows the request through our logs); anything else is replaced by a fresh one. The id is put
on the response, on `request.request_id`, and in project.logging.request_id_var, from where
RequestIdFilter stamps it on every log record emitted while the request is served.

The same middleware takes the W3C trace context from the request's `traceparent` (or starts a
trace: project.tracing) and records the request's Prometheus metrics by URL route
(project.metrics): one clock, one place, on the hot path.
"""
import logging
import os
import re
import time
import uuid
from collections.abc import Callable

from django.contrib.auth.middleware import AuthenticationMiddleware as DjangoAuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware as DjangoMessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware

from project import metrics, tracing
from project.logging import redact_path, request_id_var

logger = logging.getLogger(__name__)

HEADER = "X-Request-ID"
# Letters, digits and . _ : - only, at most 128 characters: nothing that could forge a log
# line or smuggle markup into a log viewer.
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def request_id_from(raw: str | None) -> str:
    """The caller's id when it is sane, else a new one."""
    if raw and _SANE_ID.fullmatch(raw):
        return raw
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # META, not request.headers: that builds a dict of every header on first use.
        request_id = request_id_from(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = request_id
        # Not reset when the chain returns: Django logs 4xx/5xx answers ("Not Found: ...") after
        # the middleware chain, and those lines should carry the id too. request_finished
        # (sent when the server closes the response) clears it.
        request_id_var.set(request_id)
        started = time.monotonic()
        incoming = tracing.TraceContext.parse(request.headers.get(tracing.HEADER))
        with tracing.span(f"HTTP {request.method}", kind=tracing.SpanKind.SERVER, parent=incoming) as trace:
            try:
                response = self.get_response(request)
            except BaseException:
                request_id_var.set(None)
                raise
        # Kept, like the request id, for Django's lines after the chain; cleared by request_finished.
        tracing.enter(trace)
        response[HEADER] = request_id
        seconds = time.monotonic() - started
        match = request.resolver_match
        route = match.route if match is not None and match.url_name != "unrouted" else None
        metrics.http_request_observe(route=route, method=request.method, status=response.status_code, seconds=seconds)
        if logger.isEnabledFor(logging.INFO):  # LOG_LEVEL=WARNING: no record built at all
            duration_ms = round(seconds * 1000, 1)
            path = redact_path(request.path)
            logger.info(
                "%s %s %s %.1fms",
                request.method,
                path,
                response.status_code,
                duration_ms,
                extra={"method": request.method, "path": path, "status": response.status_code,
                       "duration_ms": duration_ms},
            )
        return response


def _forget_request_id(**kwargs: object) -> None:
    request_id_var.set(None)
    tracing.enter(None)


request_finished.connect(_forget_request_id, dispatch_uid="project.middleware.forget_request_id")


class NoStoreMiddleware:
    """`Cache-Control: no-store` on every answer that does not set its own Cache-Control.

    The API's answers carry tokens (login) and personal, health-related data (me, allergies,
    preferences, sessions, export...), which no browser, proxy or CDN may keep. The default is
    therefore "store nothing", for errors too; an answer that is public and cacheable says so
    itself (e.g. `@method_decorator(cache_control(public=True, max_age=3600), name="get")`) and
    is left alone. Static files never reach this middleware (WhiteNoise answers them first,
    with its own long-lived headers).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
        return response


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, without its warning when `collectstatic` has not run: with
    WHITENOISE_USE_FINDERS the files are found in the apps then, so nothing is missing."""

    def add_files(self, root: str, prefix: str | None = None) -> None:
        if os.path.isdir(root):
            super().add_files(root, prefix)


# --- The admin's middleware, skipped on the token API ------------------------------------
# Sessions, request.user and messages serve the admin (browser, session login). The API under
# /api/ authenticates by token in DRF and never reads a session, so there these cost ~100 µs a
# request for nothing. (CSRF stays everywhere: Django's deploy check wants its own class, and it
# returns at once for DRF's CSRF-exempt views.)
API_PREFIX = "/api/"


class _NotOnTheApi:
    get_response: Callable[[HttpRequest], HttpResponse]

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(API_PREFIX):
            return self.get_response(request)
        return super().__call__(request)  # type: ignore[misc]


class SessionMiddleware(_NotOnTheApi, DjangoSessionMiddleware):
    pass


class AuthenticationMiddleware(_NotOnTheApi, DjangoAuthenticationMiddleware):
    pass


class MessageMiddleware(_NotOnTheApi, DjangoMessageMiddleware):
    pass
