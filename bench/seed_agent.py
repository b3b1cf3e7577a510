"""Seed 000 §5's `agent_service._request_with_retry`, kept as written (bench only).

The synchronous design calls the Agent from inside the HTTP request: up to 3 tries, sleeping
1 s then 2 s between them, each with a 10 s timeout, a fresh `requests` call every time.
This module is *rollback-unsafe* by construction: that is what the benchmark measures.
"""
import logging
import time
from typing import Any

import requests
from django.conf import settings

logger = logging.getLogger(__name__)

MAX_RETRIES = 3
INITIAL_BACKOFF_SECONDS = 1.0
TIMEOUT_SECONDS = 10


def _request_with_retry_rollback_unsafe(method: str, path: str, **kwargs: Any) -> requests.Response:
    url = f"{settings.AGENT_BASE_URL.rstrip('/')}{path}"
    headers = {"X-Service-Token": settings.AGENT_SERVICE_TOKEN, "Content-Type": "application/json"}
    backoff = INITIAL_BACKOFF_SECONDS
    for attempt in range(1, MAX_RETRIES + 1):
        try:
            response = requests.request(method, url, headers=headers, timeout=TIMEOUT_SECONDS, **kwargs)
            if 400 <= response.status_code < 500:
                response.raise_for_status()
            if response.status_code >= 500:
                raise requests.HTTPError(f"Agent returned {response.status_code}", response=response)
            return response
        except (requests.ConnectionError, requests.Timeout, requests.HTTPError) as exc:
            if attempt == MAX_RETRIES:
                logger.error("Agent request failed after %d attempts: %s %s: %s", MAX_RETRIES, method, path, exc)
                raise
            logger.warning("Agent request attempt %d/%d failed: %s; retrying in %.1fs", attempt, MAX_RETRIES, exc,
                           backoff)
            time.sleep(backoff)
            backoff *= 2
    raise requests.ConnectionError("Exhausted retries")


def update_agent_allergies_rollback_unsafe(
    *, uid: str, confirmed: list[str], intolerances: list[str], severity: dict[str, str]
) -> dict:
    payload = {"confirmed": confirmed, "intolerances": intolerances, "severity": severity}
    return _request_with_retry_rollback_unsafe("PATCH", f"/users/{uid}/allergies", json=payload).json()
