"""Helpers for the recoverability and broker end-to-end tests: the Agent double's request log,
the bus figures and the operator commands, read from outside the processes."""
import os
import subprocess
import uuid
from typing import Any

import requests

from tests.e2e.harness import METRICS_TOKEN, REPO, Stack, wait_for
from tests.e2e.helpers import mails_to


def agent_calls(stack: Stack, *, uid: str | None = None, method: str | None = None) -> list[dict[str, Any]]:
    """Requests the Agent double received on its /users API (in arrival order)."""
    calls = [r for r in stack.agent.requests() if r["path"].startswith("/users/")]
    if uid is not None:
        calls = [r for r in calls if r["path"].startswith(f"/users/{uid}")]
    if method is not None:
        calls = [r for r in calls if r["method"] == method]
    return calls


def current_fault(stack: Stack) -> dict[str, Any] | None:
    """The double's active fault (None once a `fail_count` fault has been used up)."""
    response = requests.get(f"{stack.agent.control_url}/fault", timeout=5)
    response.raise_for_status()
    return response.json()["fault"]


def uid_of(stack: Stack, email: str) -> str:
    """The uid of a user who signed up (read through the app, as an operator would)."""
    code = f"from identity.models import User; print(User.objects.get(email={email!r}).uid)"
    return str(uuid.UUID(stack.manage("shell", "-c", code).stdout.strip().splitlines()[-1]))


def _metrics(stack: Stack) -> str:
    response = stack.api("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200, response.text
    return response.text


def bus(stack: Stack) -> dict[str, Any]:
    """The bus figures as `bus_status --json` shapes them, read from the operator's /metrics
    (the bus state gauges) rather than starting a Django process per look."""
    from prometheus_client.parser import text_string_to_metric_families

    by_type: dict[str, dict[str, int]] = {}
    oldest = 0.0
    keys = {
        "kairos_bus_backlog": "backlog", "kairos_bus_retrying": "retrying", "kairos_bus_dead_letters": "dead_letters"
    }
    for family in text_string_to_metric_families(_metrics(stack)):
        for sample in family.samples:
            if sample.name == "kairos_bus_oldest_undelivered_age_seconds":
                oldest = max(oldest, sample.value)
            elif sample.name in keys:
                figures = by_type.setdefault(sample.labels["type"], {"backlog": 0, "retrying": 0, "dead_letters": 0})
                figures[keys[sample.name]] += int(sample.value)
    totals = {key: sum(figures[key] for figures in by_type.values()) for key in ("backlog", "retrying", "dead_letters")}
    return {**totals, "oldest_pending_age_seconds": int(oldest), "by_type": by_type}


def dead_letters(stack: Stack) -> int:
    return bus(stack)["dead_letters"]


def wait_drained(stack: Stack, timeout: float = 60) -> dict[str, Any]:
    return wait_for(lambda: (status := bus(stack))["backlog"] == 0 and status, timeout=timeout, interval=0.2,
                    what="the bus to drain")


def read_backs_open(stack: Stack) -> int:
    """Users whose copy at the Agent is being read back (their next read-back step is scheduled:
    the backlog does not count it until it is due)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(_metrics(stack)):
        for sample in family.samples:
            if sample.name == "kairos_verification_read_backs_open":
                return int(sample.value)
    raise AssertionError("/metrics has no kairos_verification_read_backs_open")


def wait_settled(stack: Stack, timeout: float = 60) -> dict[str, Any]:
    """Until nothing is left that could still call the Agent: no event undelivered, no read-back
    scheduled."""
    return wait_for(lambda: (status := bus(stack))["backlog"] == 0 and read_backs_open(stack) == 0 and status,
                    timeout=timeout, interval=0.2, what="the bus to drain and every read-back to end")


def sentinel(stack: Stack, email: str, timeout: float = 30) -> None:
    """Raise a later event about the account at `email` (a password-reset mail) and wait until the
    consumer has sent it. One user's events are taken in order (one partition on RabbitMQ, the
    oldest due first on the embedded bus), so the bus has then gone past whatever it held for that
    user before: a negative check after this is anchored on something that happened."""
    def sent() -> int:
        return len(mails_to(stack.workdir / "emails", email))

    before = sent()
    response = stack.api("POST", "/api/password/reset/", json={"email": email})
    assert response.status_code == 202, response.text
    wait_for(lambda: sent() > before, timeout=timeout, what=f"the consumer to mail {email} again")


def replay(stack: Stack, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return stack.manage("replay_dead_letters", *args, check=check)


def wait_dead_letters(stack: Stack, count: int, timeout: float = 30) -> dict[str, Any]:
    return wait_for(
        lambda: (status := bus(stack))["dead_letters"] == count and status,
        timeout=timeout,
        interval=0.2,
        what=f"{count} dead letters",
    )


def services_script(*args: str, timeout: float = 180) -> None:
    """scripts/services.sh (or KAIROS_SERVICES_SCRIPT) with this run's environment: the KAIROS_*
    variables choose the broker it acts on."""
    script = os.environ.get("KAIROS_SERVICES_SCRIPT") or str(REPO / "scripts" / "services.sh")
    subprocess.run(["bash", script, *args], check=True, timeout=timeout, env=os.environ.copy(), capture_output=True)
