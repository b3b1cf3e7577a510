"""The throttles under gunicorn (production settings, two workers): counts are shared by the workers,
on the embedded store and on Redis, and a client-chosen X-Forwarded-For changes nothing."""
import os
import uuid

import pytest
import requests

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["embedded", "redis"])
def throttled_stack(request, stack_factory):
    redis_url = ""
    if request.param == "redis":
        redis_url = os.environ.get("REDIS_URL", "")
        if not redis_url:
            pytest.skip("needs Redis: set REDIS_URL (scripts/services.sh env gives its test server's)")
    # The default limit over a day-long window: real time cannot cross a window during the test.
    env = {
        "THROTTLE_RATES": "login=10/day",
        "REDIS_URL": redis_url,
        "THROTTLE_KEY_PREFIX": f"kairos-e2e-{uuid.uuid4().hex}:",
    }
    stack = stack_factory(consumers=0, extra_env=env)
    yield stack
    if redis_url:
        import redis

        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=env["THROTTLE_KEY_PREFIX"] + "*"))
        if keys:
            client.delete(*keys)


def test_every_worker_sees_one_count_and_forwarded_for_is_ignored(throttled_stack) -> None:
    statuses = []
    for i in range(12):
        # A new connection each time (no session), so the requests spread over both workers.
        response = requests.post(
            f"{throttled_stack.api_url}/api/login/",
            json={"email": f"user{i}@example.com", "password": "not-the-password-1"},
            headers={"X-Forwarded-For": f"192.0.2.{i}", "Connection": "close"},
            timeout=30,
        )
        statuses.append(response.status_code)
    assert statuses == [401] * 10 + [429] * 2
    assert response.json()["code"] == "throttled" and int(response.headers["Retry-After"]) > 0
