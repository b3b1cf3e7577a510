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


# Secrets that travel in URLs, never logged: the verification token is a path segment, of the
# API's /api/verify/<token>/ and of the frontend's /verify/<token> (which browsers send on as the
# Referer of the API calls that page makes); link tokens of the frontend's pages travel as
# ?token= (the reset page), and so might any other credential-like query parameter.
_SECRET_PATHS = re.compile(r"(/verify/)(?!resend(?:[/?#\s'\"]|$))[^/?#\s'\"]+", re.IGNORECASE)
_SECRET_QUERY = re.compile(
    r"((?:^|[?&;\s])(?:[a-z_]*token|[a-z_]*secret|[a-z_]*password|api_key|signature)=)[^&#\s'\"]+", re.IGNORECASE
)
# What any secret above needs in the text: checked first, every request's path comes through here.
_TRIGGER = re.compile(r"/verify/|=", re.IGNORECASE)


def redact_path(text: str) -> str:
    """`text` with every URL secret above replaced by <redacted> (any text holding paths or URLs)."""
    if not _TRIGGER.search(text):
        return text  # the common case: one scan, no substitution
    return _SECRET_QUERY.sub(r"\1<redacted>", _SECRET_PATHS.sub(r"\1<redacted>", text))


class RedactSecretsFilter(logging.Filter):
    """Blanks URL secrets out of a record's message (for loggers whose lines hold raw URLs:
    Django's request loggers, runserver's, gunicorn's access and error logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_path(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


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


class RequestIdFilter(RedactSecretsFilter):
    """Adds `request_id` to records emitted while an API request is served, and blanks URL
    secrets out of every line (Django's own request loggers print raw paths: "Not Found: ...",
    runserver's "GET /api/verify/<token>/ ...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        trace_id = current_trace_id()
        if trace_id is not None and not hasattr(record, "trace_id"):
            record.trace_id = trace_id
        return super().filter(record)


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
