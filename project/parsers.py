"""Request parsers of the API."""
import io
from typing import Any

from django.conf import settings
from rest_framework import exceptions, parsers

from project.errors import RequestTooLarge
from project.text import text_problem


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with Django's body size limit enforced, that accepts only valid text.

    DRF reads the request stream itself, which bypasses the DATA_UPLOAD_MAX_MEMORY_SIZE check
    Django applies in `request.body`; without this a client could make us buffer any amount.
    Reads at most limit + 1 bytes, so a lying or absent Content-Length does not get past it.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and stream is not None:
            request = (parser_context or {}).get("request")
            meta = getattr(request, "META", {}) if request is not None else {}
            try:
                declared = int(meta.get("CONTENT_LENGTH") or 0)
            except (TypeError, ValueError):
                declared = 0
            if declared > limit:
                raise RequestTooLarge
            raw = stream.read(limit + 1)
            if len(raw) > limit:
                raise RequestTooLarge
            stream = io.BytesIO(raw)
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:  # e.g. [[[[...]]]] 10 000 deep: json raises this, not ValueError
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from exc
        # JSON may spell a lone surrogate ("\ud800"), which is no text: stored, it would make
        # every later answer that carries it fail to render. Refused here, for every endpoint.
        problem = text_problem(data)
        if problem:
            raise exceptions.ParseError(f"JSON parse error - {problem}.")
        return data
