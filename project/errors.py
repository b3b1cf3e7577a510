"""One error shape for every 4xx/5xx answer: {"detail", "code"} plus "errors" per field."""
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response


class RequestTooLarge(exceptions.APIException):
    """The body is over DATA_UPLOAD_MAX_MEMORY_SIZE (raised by project.parsers and for Django's own check)."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "request_too_large"


def _first_code(errors: Any) -> str:
    """The code of the first field error, used when a serializer raised one error only."""
    if isinstance(errors, dict):
        for value in errors.values():
            return _first_code(value)
    if isinstance(errors, list) and errors:
        return _first_code(errors[0])
    return getattr(errors, "code", None) or "invalid"


def _plain(errors: Any) -> Any:
    """ErrorDetail trees → plain strings, keeping the structure."""
    if isinstance(errors, dict):
        return {str(key): _plain(value) for key, value in errors.items()}
    if isinstance(errors, list):
        return [_plain(value) for value in errors]
    return str(errors)


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


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    # Imported here: rest_framework.views loads the parser classes, and project.parsers imports
    # this module (a top-level import would be circular).
    from rest_framework.views import exception_handler

    exc = _as_api_exception(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None  # not an API error: Django's 500 handler (json_server_error) answers
    if isinstance(exc, exceptions.ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        one_field = isinstance(exc.detail, dict) and len(exc.detail) == 1
        response.data = {
            "detail": "Invalid input.",
            "code": _first_code(exc.detail) if one_field else "invalid",
            "errors": _plain(errors),
        }
        return response
    detail = getattr(exc, "detail", None)
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    if isinstance(detail, dict | list):
        # An APIException raised with structured detail: keep it, under "errors".
        response.data = {"detail": "Request failed.", "code": "error", "errors": _plain(detail)}
        return response
    response.data = {"detail": str(detail), "code": code if isinstance(code, str) else "error"}
    return response


def _json_error(status_code: int, detail: str, code: str) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code}, status=status_code)


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
