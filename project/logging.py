"""One log format for the API, the relay and the consumer (LOG_FORMAT=text|json).

Both formatters print the caller's extra fields (event_id, uid, outcome, request_id, ...),
so a line carries the same facts whichever format is configured. The request id of the HTTP
request being served lives in a context variable set by project.middleware.RequestIdMiddleware
and is stamped on every record by RequestIdFilter (none outside a request: bus lines carry
event ids instead). The filter also stamps the W3C trace id of the current span
(project.tracing: the request's, or the delivery's in the consumer) as `trace_id`, so one change
can be followed from the API's line to the consumer's delivery line.
"""
import contextvars
import json
import logging
import re
from datetime import UTC, datetime

from project.tracing import current_trace_id

# LogRecord attributes that are not extra fields passed by the caller.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

#: The id of the HTTP request this thread/task is serving, or None.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


# URL path segments that are credentials (email verification tokens): never logged.
_SECRET_PATHS = re.compile(r"(/api/verify/)(?!resend/)[^/\s'\"]+")


def redact_path(text: str) -> str:
    # The substring test first: every request's path comes through here, few are verification links.
    return _SECRET_PATHS.sub(r"\1<redacted>", text) if "/api/verify/" in text else text


def _loggable(value: object) -> object:
    # django.request passes the HttpRequest as an extra; its repr holds the full path.
    if hasattr(value, "method") and hasattr(value, "path") and hasattr(value, "META"):
        return f"{value.method} {redact_path(value.path)}"
    return value


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {
        key: _loggable(value)
        for key, value in vars(record).items()
        if key not in _STANDARD and not key.startswith("_")
    }


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to records emitted while an API request is served, and blanks
    credentials out of the paths that Django's own request loggers print ("Not Found: ...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        trace_id = current_trace_id()
        if trace_id is not None and not hasattr(record, "trace_id"):
            record.trace_id = trace_id
        if record.name.startswith("django.") and "/api/verify/" in record.getMessage():
            record.msg, record.args = redact_path(record.getMessage()), None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_extras(record))
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger message`, then ` request_id=...` and ` trace_id=...` when there are."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        # Only these ids are appended: bus lines already spell their other fields out.
        # record.message: formatted by super().format() just now (getMessage() would format it again).
        suffix = ""
        for name in ("request_id", "trace_id"):
            value = getattr(record, name, None)
            if value and f"{name}=" not in record.message:
                suffix += f" {name}={value}"
        if suffix:
            first, newline, rest = text.partition("\n")
            text = f"{first}{suffix}{newline}{rest}"
        return text
