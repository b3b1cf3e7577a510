"""gunicorn's logger for the API: no secret in its access or error lines.

gunicorn's access line holds the raw request line, the Referer and, in custom formats, any
header or environ value: a verification link (/api/verify/<token>/, or the frontend page
/verify/<token> as Referer) or a reset page's ?token= would be written in clear. This logger
redacts them (project.logging.redact_path) and never prints a credential header, whatever
`access_log_format` says. project/gunicorn_conf.py (the image's `-c python:project.gunicorn_conf`,
and the root gunicorn.conf.py that a bare `gunicorn` reads) selects it.
"""
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger

from project.logging import RedactSecretsFilter, redact_path

# Request headers that are credentials, as gunicorn names them in atoms ({name}i, {HTTP_NAME}e).
_CREDENTIAL_HEADERS = ("authorization", "x-auth-token", "x-service-token", "cookie", "proxy-authorization")
_CREDENTIAL_ATOMS = frozenset(
    [f"{{{name}}}i" for name in _CREDENTIAL_HEADERS]
    + [f"{{http_{name.replace('-', '_')}}}e" for name in _CREDENTIAL_HEADERS]
    + ["{set-cookie}o"]
)


class Logger(GunicornLogger):
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        # The error log prints raw URIs too ("Error handling request /api/verify/...").
        for log in (self.error_log, self.access_log):
            if not any(isinstance(f, RedactSecretsFilter) for f in log.filters):
                log.addFilter(RedactSecretsFilter())

    def atoms(self, resp: Any, req: Any, environ: dict, request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        for key, value in atoms.items():
            if key in _CREDENTIAL_ATOMS:
                atoms[key] = "<redacted>"
            elif isinstance(value, str):
                atoms[key] = redact_path(value)
        atoms["u"] = "-"  # gunicorn decodes a Basic credential's user name here
        return atoms
