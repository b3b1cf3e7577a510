"""Database statements per API request, counted in-process (Django's CaptureQueriesContext, which also logs
BEGIN/COMMIT): the service's GET/PUT /api/allergies/ and the idiomatic peer's, each in its steady state (the
request repeated once first, so the token's rare last-use write is not counted)."""
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
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    out: dict[str, Any] = {}
    for name, (method, path, body) in REQUESTS.items():
        credential = peer_token if name.startswith("peer") else token
        kwargs: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Token {credential}"}
        if body:
            kwargs.update(data=json.dumps(PUT_BODIES[0]), content_type="application/json")
        call = getattr(client, method.lower())
        call(path, **kwargs)
        with CaptureQueriesContext(connection) as captured:
            response = call(path, **kwargs)
        out[name] = {"status": response.status_code, "count": len(captured.captured_queries),
                     "statements": [q["sql"][:120] for q in captured.captured_queries]}
    return out
