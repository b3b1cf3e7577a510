"""schemathesis over every operation of the app's own OpenAPI schema, in process.

Why in process (WSGI) rather than against gunicorn: the same requests go through the same Django
stack (middleware, DRF, exception handler, database), at a fraction of the cost per case, so CI
affords well over 1000 cases in a few seconds of wall time per operation; and each case runs in
a savepoint that is rolled back, so every case starts from the same state (a verified user with
a live token) and a case that logs out or deletes the account cannot starve the ones after it.
The live stack is exercised by tests/e2e and the chaos suite.

Checks, on every case: no 5xx; status code documented; content type documented; body valid
against the documented schema; documented headers present; undeclared methods answered 405;
auth enforced where the schema declares it; and (ours) every 4xx/5xx body is JSON
`{"detail": str, "code": str}`. Generation mixes schema-valid and schema-violating input.

KAIROS_FUZZ_EXAMPLES sets the examples per operation and phase (CI default below);
KAIROS_FUZZ_SEED replays a run (the seed is printed in the summary).
"""
import json
import os
import time

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.db import transaction
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Ok

from project.wsgi import application
from tests.fuzz import stats
from throttling.stores import store_get

EXAMPLES = int(os.environ.get("KAIROS_FUZZ_EXAMPLES", "60"))
SEED = os.environ.get("KAIROS_FUZZ_SEED")

config = SchemathesisConfig.from_dict(
    {
        **({"seed": int(SEED)} if SEED else {}),
        "generation": {
            "max-examples": EXAMPLES,
            "mode": "all",
            # NUL bytes in strings: PostgreSQL refuses them in text, which must be a 400, not a 500.
            "allow-x00": True,
            # Unknown query parameters are ignored, as HTTP APIs (and DRF) do: not a "negative" case.
            "allow-extra-parameters": False,
            # Keep failing examples out of the working tree; the seed replays a run instead.
            "database": "none",
        },
        "checks": {
            # Schema-valid input may still be refused by a business rule the schema cannot express
            # (a common password, an unknown email, a wrong token): a 4xx there is correct.
            "positive_data_acceptance": {"enabled": False},
            # Schema-invalid input must still get no 5xx, a documented status and a conforming body
            # (the checks above); but DRF normalises some of it into valid input on purpose (strips
            # whitespace, control characters included, before checking max_length; reads `?limit=`
            # as "not given"), which this check would report as "accepted".
            "negative_data_rejection": {"enabled": False},
        },
    }
)
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, config=config)
stats.seed = config.seed
stats.operations = sum(1 for result in schema.get_all_operations() if isinstance(result, Ok))


def error_body_shape(ctx, response, case) -> None:
    """Every error answer is JSON {"detail", "code"}, whether the schema documents that status or not."""
    if response.status_code < 400:
        return None
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(f"{response.status_code} body is not JSON: {response.content[:200]!r}") from exc
    assert isinstance(body, dict), f"{response.status_code} body is not an object: {body!r}"
    assert isinstance(body.get("detail"), str) and isinstance(body.get("code"), str), (
        f"{response.status_code} body lacks string detail/code: {body!r}"
    )
    return None


def headers(account) -> dict[str, str]:
    """Real credentials on every case, so generated input reaches the code behind authentication
    (refusing bad credentials is the security sweep's job; schemathesis still probes without them)."""
    return {**account.headers, "X-Service-Token": django_settings.AGENT_SERVICE_TOKEN}


@pytest.mark.fuzz
@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)
def test_operation_survives_generated_input(case, account, wsgi_in_test_transaction) -> None:
    label = case.operation.label
    started = time.monotonic()
    try:
        with transaction.atomic():
            store_get().clear()  # throttle counters: each case is judged on its input, not on the ones before
            response = case.call_and_validate(headers=headers(account), additional_checks=[error_body_shape])
            stats.statuses[response.status_code] += 1
            transaction.set_rollback(True)
    finally:
        stats.cases[label] += 1
        stats.seconds[label] = stats.seconds.get(label, 0.0) + time.monotonic() - started
