"""One error shape for every 4xx/5xx answer, mapped here and nowhere else.

    {"detail": "Invalid input.", "code": "validation_error",
     "errors": {"email": [{"message": "Enter a valid email address.", "code": "invalid"}]}}

`detail` is for people, `code` is stable for programs: one code per class of error (every
validation failure is `validation_error`, whatever the field). `errors` comes with validation
failures only and maps each field (a dotted path for nested ones: `preferences.dietary`,
`confirmed.0`) to its problems, each with a message and a machine code.

Domain code raises `ApplicationError` subclasses (HackSoft's pattern) that carry their status,
code and, for input problems, the field; views never catch them. DRF's and Django's own
exceptions are mapped to the same shape. The codes are listed in docs/api.md.
"""
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import IntegrityError, OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)

VALIDATION_ERROR = "validation_error"
VALIDATION_DETAIL = "Invalid input."


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one input field: a message for people and a code for programs."""

    message: str
    code: str = "invalid"


class ApplicationError(Exception):
    """A domain error the caller can act on. Subclasses set `status_code`, `code` and `message`.

    Raised with `field=` (or `errors=` for several fields) it is an input problem and is
    answered as a validation error (400, `validation_error`) with the subclass's `code` on the
    field; without, it is answered as `{"detail": message, "code": code}` with `status_code`.
    """

    status_code: ClassVar[int] = status.HTTP_400_BAD_REQUEST
    code: ClassVar[str] = "error"
    message: ClassVar[str] = "Request failed."

    def __init__(
        self,
        message: str | None = None,
        *,
        field: str | None = None,
        errors: dict[str, list[FieldProblem]] | None = None,
    ) -> None:
        self.detail = message or type(self).message
        super().__init__(self.detail)
        self.errors: dict[str, list[FieldProblem]] = dict(errors or {})
        if field is not None:
            self.errors.setdefault(field, [FieldProblem(self.detail, type(self).code)])


class RequestTooLarge(exceptions.APIException):
    """The body is over DATA_UPLOAD_MAX_MEMORY_SIZE (raised by project.parsers and for Django's own check)."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "request_too_large"


class FieldProblemSerializer(serializers.Serializer):
    message = serializers.CharField()
    code = serializers.CharField(help_text="e.g. required, invalid, blank, max_length, read_only, too_large.")


class ErrorSerializer(serializers.Serializer):
    """The schema of every error answer (for drf-spectacular)."""

    detail = serializers.CharField(help_text="For people; may change.")
    code = serializers.CharField(help_text="Stable, for programs: see the list of codes in the API guide.")
    errors = serializers.DictField(
        child=serializers.ListField(child=FieldProblemSerializer()),
        required=False,
        help_text="Validation errors only: field (dotted path for nested fields) → its problems.",
    )


# --- DRF exceptions → the shape -----------------------------------------------------------
def _flatten(errors: Any, prefix: str = "") -> dict[str, list[FieldProblem]]:
    """DRF's ErrorDetail tree → {"field.sub": [FieldProblem]}; a list of strings stays on its field."""
    flat: dict[str, list[FieldProblem]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            for path, problems in _flatten(value, f"{prefix}.{key}" if prefix else str(key)).items():
                flat.setdefault(path, []).extend(problems)
        return flat
    if isinstance(errors, list):
        for index, value in enumerate(errors):
            sub = prefix if not isinstance(value, dict | list) else f"{prefix}.{index}"
            for path, problems in _flatten(value, sub).items():
                flat.setdefault(path, []).extend(problems)
        return flat
    return {prefix or "non_field_errors": [FieldProblem(str(errors), getattr(errors, "code", None) or "invalid")]}


def _validation_body(errors: dict[str, Iterable[FieldProblem]]) -> dict[str, Any]:
    return {
        "detail": VALIDATION_DETAIL,
        "code": VALIDATION_ERROR,
        "errors": {
            field: [{"message": p.message, "code": p.code} for p in problems] for field, problems in errors.items()
        },
    }


def _as_api_exception(exc: Exception) -> Exception:
    """Django's own exceptions → the DRF exception with the same meaning."""
    if isinstance(exc, RequestDataTooBig):  # before SuspiciousOperation: it is one
        return RequestTooLarge()
    if isinstance(exc, SuspiciousOperation):
        return exceptions.ParseError("Bad request.", code="bad_request")
    if isinstance(exc, UnicodeDecodeError):
        return exceptions.ParseError("Request body is not valid UTF-8.")
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, PermissionDenied):
        return exceptions.PermissionDenied()
    return exc


#: PostgreSQL's SQLSTATEs for a transaction given up because another one was in the way:
#: serialization_failure, deadlock_detected, lock_not_available. The transaction was rolled back,
#: so nothing changed, and the same request can succeed a moment later.
TRANSIENT_CONFLICT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
#: foreign_key_violation. The code never writes a reference it has not just read, so one means the
#: row it refers to was deleted meanwhile (a user's first preferences while the account is being
#: deleted): rolled back too, and sent again the request gets the answer for what is there now.
VANISHED_REFERENCE_SQLSTATE = "23503"
CONFLICT_RETRY_DETAIL = "The request met a concurrent change to the same data and was not applied. Try again."
CONFLICT_RETRY_AFTER_SECONDS = 1


def is_transient_conflict(exc: BaseException) -> bool:
    """A database error that only says "another transaction was in the way": a deadlock or a
    serialization failure on PostgreSQL, SQLite's busy timeout running out, or a row referred to
    that a concurrent transaction deleted."""
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    if isinstance(exc, OperationalError):
        return sqlstate in TRANSIENT_CONFLICT_SQLSTATES or "database is locked" in str(exc)
    if isinstance(exc, IntegrityError):
        return sqlstate == VANISHED_REFERENCE_SQLSTATE or "FOREIGN KEY constraint failed" in str(exc)
    return False


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's EXCEPTION_HANDLER: the one place where errors become answers."""
    # Imported here: rest_framework.views loads the parser classes, and project.parsers imports
    # this module (a top-level import would be circular).
    from rest_framework.views import exception_handler

    if isinstance(exc, ApplicationError):
        if exc.errors:
            return Response(_validation_body(exc.errors), status=status.HTTP_400_BAD_REQUEST)
        return Response({"detail": exc.detail, "code": exc.code}, status=exc.status_code)
    if is_transient_conflict(exc):
        # E.g. a user's PUT /api/allergies/ and DELETE /api/account/ at the same moment: the
        # database broke the tie by rolling one back. Worth a line (a steady rate is a lock-order
        # bug), not a 500 to the client, who only has to send it again.
        logger.warning("transient database conflict in %s: %s", context.get("view"), exc)
        return Response(
            {"detail": CONFLICT_RETRY_DETAIL, "code": "conflict_retry"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(CONFLICT_RETRY_AFTER_SECONDS)},
        )
    exc = _as_api_exception(exc)
    response = exception_handler(exc, context)
    if response is None:
        if settings.DEBUG:
            # DEBUG (scripts/dev) would answer Django's HTML debug page; the traceback goes to
            # the console instead and the frontend gets the same JSON as in production.
            logger.error("unhandled exception in %s", context.get("view"), exc_info=exc)
            return Response({"detail": "Internal server error.", "code": "server_error"}, status=500)
        return None  # not an API error: Django's 500 handler (json_server_error) answers
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = _validation_body(_flatten(detail))
        return response
    detail = getattr(exc, "detail", None)
    if isinstance(detail, dict | list):
        # An APIException raised with structured detail: keep it, under "errors".
        response.data = _validation_body(_flatten(detail))
        response.data.update(detail="Request failed.", code="error")
        return response
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    response.data = {"detail": str(detail), "code": code if isinstance(code, str) else "error"}
    return response


# --- Answers outside DRF: Django's handlers and unrouted paths ------------------------------
def _json_error(status_code: int, detail: str, code: str, **headers: str) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code}, status=status_code, headers=headers or None)


def json_bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    if isinstance(exception, RequestDataTooBig):
        return _json_error(413, RequestTooLarge.default_detail, RequestTooLarge.default_code)
    return _json_error(400, "Bad request.", "bad_request")


def json_permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _json_error(403, "Permission denied.", "permission_denied")


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _json_error(404, "Not found.", "not_found")


def json_server_error(request: HttpRequest) -> JsonResponse:
    return _json_error(500, "Internal server error.", "server_error")


def json_csrf_failure(request: HttpRequest, reason: str = "") -> JsonResponse:
    """CSRF_FAILURE_VIEW: only session-authenticated Django views (the admin) check CSRF."""
    return _json_error(403, "CSRF verification failed.", "csrf_failed")


@csrf_exempt
def unrouted(request: HttpRequest, path: str = "") -> JsonResponse:
    """The last URL pattern, so every path answers JSON, in DEBUG as in production.

    A path that exists with a trailing slash gets a 308 (which, unlike Django's APPEND_SLASH
    301, keeps the method and the body) to that path; anything else is a JSON 404.
    """
    if not request.path.endswith("/"):
        target = request.path + "/"
        try:
            match = resolve(target)
        except Resolver404:
            match = None
        if match is not None and match.func is not unrouted:
            query = request.META.get("QUERY_STRING", "")
            location = target + (f"?{query}" if query else "")
            return _json_error(
                status.HTTP_308_PERMANENT_REDIRECT,
                f"This path ends with a slash: {target}",
                "trailing_slash_required",
                Location=location,
            )
    return json_not_found(request)
