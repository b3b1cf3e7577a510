"""One error shape for every 4xx/5xx answer: {"detail", "code"} plus "errors" per field."""
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


def _first_code(errors: Any) -> str:
    """The code of the first field error, used when a serializer raised one error only."""
    if isinstance(errors, dict):
        for value in errors.values():
            return _first_code(value)
    if isinstance(errors, list) and errors:
        return _first_code(errors[0])
    return getattr(errors, "code", "invalid")


def _plain(errors: Any) -> Any:
    """ErrorDetail trees → plain strings, keeping the structure."""
    if isinstance(errors, dict):
        return {key: _plain(value) for key, value in errors.items()}
    if isinstance(errors, list):
        return [_plain(value) for value in errors]
    return str(errors)


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, RequestDataTooBig):
        exc = exceptions.APIException("Request body too large.")
        exc.status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
        exc.default_code = "request_too_large"
        return Response(
            {"detail": "Request body too large.", "code": "request_too_large"},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, SuspiciousOperation):
        return Response({"detail": "Bad request.", "code": "bad_request"}, status=400)
    if isinstance(exc, UnicodeDecodeError):
        return Response({"detail": "Request body is not valid UTF-8.", "code": "parse_error"}, status=400)

    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {
            "detail": "Invalid input.",
            "code": "invalid",
            "errors": _plain(errors),
        }
        if isinstance(exc.detail, dict) and len(exc.detail) == 1:
            response.data["code"] = _first_code(exc.detail)
        return response
    if isinstance(exc, Http404):
        response.data = {"detail": "Not found.", "code": "not_found"}
        return response
    if isinstance(exc, PermissionDenied):
        response.data = {"detail": "Permission denied.", "code": "permission_denied"}
        return response
    detail = getattr(exc, "detail", str(exc))
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    response.data = {"detail": str(detail), "code": code if isinstance(code, str) else "error"}
    return response


def _json_error(status_code: int, detail: str, code: str) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code}, status=status_code)


def json_bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _json_error(400, "Bad request.", "bad_request")


def json_permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _json_error(403, "Permission denied.", "permission_denied")


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _json_error(404, "Not found.", "not_found")


def json_server_error(request: HttpRequest) -> JsonResponse:
    return _json_error(500, "Internal server error.", "server_error")
