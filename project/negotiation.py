"""Content negotiation of the API: DRF's, without parsing the common case.

Every request negotiates its renderer before anything else. DRF's negotiation builds the request's header
dict and its query dict and parses the Accept header into media types: ~5 % of a GET's Python for an
answer that is always the same when the client accepts anything (`*/*`, or no Accept header) or exactly the
first renderer's type, and asks for no format (no query string, no suffix). Those requests get that answer
directly; every other one goes through DRF's code (406s, `?format=`, q-values, parameters included).
"""
from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer


class ContentNegotiation(DefaultContentNegotiation):
    def select_renderer(
        self, request: Any, renderers: list[BaseRenderer], format_suffix: str | None = None,
    ) -> tuple[BaseRenderer, str]:
        if renderers and not format_suffix and not request.META.get("QUERY_STRING"):
            first = renderers[0]
            accept = request.META.get("HTTP_ACCEPT", "*/*")
            # DRF answers `*/*` with the first renderer's own type when that type is concrete (no wildcard), and
            # that exact type (no parameters) with itself.
            if (accept == "*/*" and "*" not in first.media_type) or (
                    accept == first.media_type and ";" not in accept and "*" not in accept):
                return first, first.media_type
        return super().select_renderer(request, renderers, format_suffix)
