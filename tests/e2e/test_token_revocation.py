"""A revoked token is refused by the very next request in every gunicorn worker (logout, logout-all, password
change, password reset): no worker keeps a token it has seen, every request reads the token row."""
import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.harness import wait_for
from tests.e2e.helpers import PASSWORD, _verification_token, create_verified_user

pytestmark = pytest.mark.e2e

# gunicorn's access line: worker pid, the request id we sent (echoed by RequestIdMiddleware), status.
ACCESS_FORMAT = "access pid=%(p)s rid=%({x-request-id}o)s status=%(s)s"
ACCESS_LINE = re.compile(r"access pid=<?(?P<pid>\d+)>? rid=(?P<rid>\S+) status=(?P<status>\d+)")
RESET_LINK = re.compile(r"reset-password\?token=(?P<token>[^\s\"&<]+)")
PATHS = ("/api/allergies/", "/api/me/")  # the allergy GET's own statement, and the shared token lookup


def _workers(stack) -> dict[str, str]:
    """request id → the worker pid that answered it, from the API's access log."""
    text = (stack.workdir / "api.log").read_text(errors="replace")
    return {m["rid"]: m["pid"] for m in ACCESS_LINE.finditer(text)}


def _workers_of(stack, rids: list[str]) -> dict[str, str]:
    def logged() -> dict[str, str] | None:
        workers = _workers(stack)
        return workers if all(rid in workers for rid in rids) else None

    return wait_for(logged, timeout=10, what="the access lines")


def statuses_per_worker(stack, token: str, *, tries: int = 60) -> dict[str, set[int]]:
    """GET each path with `token` until both workers have answered each path; {worker pid: statuses seen}."""
    seen: dict[tuple[str, str], set[int]] = {}
    sent: list[tuple[str, str, int]] = []

    def get(path: str) -> tuple[str, str, int]:
        rid = uuid.uuid4().hex
        response = stack.api("GET", path, token=token, headers={"X-Request-ID": rid, "Connection": "close"})
        return rid, path, response.status_code

    # Several requests in flight at once: a sync worker serves one at a time, so the others go to
    # the other worker (sequential requests may all be accepted by the same idle worker).
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(tries):
            sent.extend(pool.map(get, PATHS * 2))
            pids = _workers_of(stack, [rid for rid, *_ in sent])
            for rid, path, status in sent:
                seen.setdefault((pids[rid], path), set()).add(status)
            if len({pid for pid, _ in seen}) >= 2 and all(sum(p == path for _, p in seen) >= 2 for path in PATHS):
                break
    workers = {pid for pid, _ in seen}
    assert len(workers) == 2, f"only worker(s) {workers} answered"
    out: dict[str, set[int]] = {}
    for (pid, _path), statuses in seen.items():
        out.setdefault(pid, set()).update(statuses)
    return out


def login(stack, email: str, password: str = PASSWORD) -> str:
    response = stack.api("POST", "/api/login/", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["token"]


def test_revoked_tokens_are_refused_at_once_by_every_worker(stack_factory) -> None:
    stack = stack_factory(extra_env={"GUNICORN_CMD_ARGS": f"--access-logformat '{ACCESS_FORMAT}'"})
    user = create_verified_user(stack, email="rev@example.com")

    # Logout: this token, in both workers, which both just accepted it.
    assert all(s == {200} for s in statuses_per_worker(stack, user.token).values())
    assert stack.api("POST", "/api/logout/", token=user.token).status_code == 200
    assert all(s == {401} for s in statuses_per_worker(stack, user.token).values())

    # Logout-all: every token of the user.
    a, b = login(stack, user.email), login(stack, user.email)
    assert all(s == {200} for s in statuses_per_worker(stack, b).values())
    assert stack.api("POST", "/api/logout/all/", token=a).status_code == 200
    for token in (a, b):
        assert all(s == {401} for s in statuses_per_worker(stack, token).values())

    # Password change: the other tokens; the one that made the change stays.
    keep, other = login(stack, user.email), login(stack, user.email)
    assert all(s == {200} for s in statuses_per_worker(stack, other).values())
    new_password = "another-long-passphrase-7"
    changed = stack.api("POST", "/api/password/change/", token=keep,
                        json={"current_password": PASSWORD, "new_password": new_password})
    assert changed.status_code == 200, changed.text
    assert all(s == {401} for s in statuses_per_worker(stack, other).values())
    assert all(s == {200} for s in statuses_per_worker(stack, keep).values())

    # Password reset: all tokens.
    assert stack.api("POST", "/api/password/reset/", json={"email": user.email}).status_code in (200, 202)
    reset_token = wait_for(lambda: _verification_token(stack.workdir / "emails", user.email, RESET_LINK),
                           timeout=60, what="the reset email")
    confirmed = stack.api("POST", "/api/password/reset/confirm/",
                          json={"token": reset_token, "new_password": "a-third-long-passphrase-9"})
    assert confirmed.status_code == 200, confirmed.text
    assert all(s == {401} for s in statuses_per_worker(stack, keep).values())
