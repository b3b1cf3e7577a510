"""Database statements per API request, counted in-process (Django's CaptureQueriesContext, which also logs
BEGIN/COMMIT): the service's GET/PUT /api/allergies/ and the idiomatic peer's, each in its steady state (the
request repeated once first, so the token's rare last-use write is not counted). Round trips add Django's
health check (CONN_HEALTH_CHECKS, a `SELECT 1` before a request's first ORM query, which the capture does not
see), counted by calling the request as a new request would start: health check not yet done."""
import json
from typing import Any

from bench.load import PUT_BODIES
from bench.stack import Stack

REQUESTS = {
    "allergies_get": ("GET", "/api/allergies/", False),
    "allergies_put": ("PUT", "/api/allergies/", True),
    "peer_get": ("GET", "/api/bench/peer/allergies/", False),
    "peer_put": ("PUT", "/api/bench/peer/allergies/", True),
}


def api_statements(stack: Stack, token: str, peer_token: str) -> dict[str, Any]:
    from unittest import mock

    from django.db import connections
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    connection = connections["default"]

    client = Client(HTTP_HOST="127.0.0.1")
    out: dict[str, Any] = {}
    for name, (method, path, body) in REQUESTS.items():
        credential = peer_token if name.startswith("peer") else token
        kwargs: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Token {credential}"}
        if body:
            kwargs.update(data=json.dumps(PUT_BODIES[0]), content_type="application/json")
        call = getattr(client, method.lower())
        call(path, **kwargs)
        connection.health_check_done = False  # as at the start of a request (the test client does not reset it)
        with CaptureQueriesContext(connection) as captured, \
                mock.patch.object(connection, "is_usable", wraps=connection.is_usable) as health_check:
            response = call(path, **kwargs)
        out[name] = {"status": response.status_code, "count": len(captured.captured_queries),
                     "health_checks": health_check.call_count,
                     "round_trips": len(captured.captured_queries) + health_check.call_count,
                     "statements": [q["sql"][:120] for q in captured.captured_queries]}
    return out
