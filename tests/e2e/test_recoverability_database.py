"""The daemons survive losing their database connections (PostgreSQL terminates them, as a
failover or a restart would) and deliver everything once it answers again."""
import threading
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.e2e.bus_helpers import wait_drained
from tests.e2e.harness import wait_for
from tests.e2e.helpers import signup

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def terminate_backends(stack) -> int:
    """Kill every server process of the stack's database (not ours): connections drop mid-query."""
    parts = urlsplit(stack.database_url)
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (parts.path.lstrip("/"),),
        ).fetchall()
    return len(rows)


def test_losing_the_database_connections_mid_stream_loses_nothing(stack_factory) -> None:
    stack = stack_factory(consumers=0)
    emails = [f"user{i}@example.com" for i in range(40)]
    for email in emails:
        signup(stack, email)
    # Keeps the consumer busy while its connections are cut (BUS_CONSUMER_CONCURRENCY calls in flight:
    # 40 users take several seconds, longer than the cuts below).
    stack.agent.fault(latency_ms=1200)
    stack.start_consumer()
    wait_for(lambda: stack.agent.state()["users"], timeout=30, what="the consumer to start delivering")

    stop = threading.Event()
    killed: list[int] = []

    def cut() -> None:
        while not stop.wait(0.7):
            killed.append(terminate_backends(stack))

    cutter = threading.Thread(target=cut)
    cutter.start()
    try:
        wait_for(lambda: sum(killed) >= 4, timeout=30, what="a few connections cut")
    finally:
        stop.set()
        cutter.join()
    # The cuts landed mid-stream: the consumer still had users to deliver when they stopped.
    assert len(stack.agent.state()["users"]) < len(emails)
    stack.agent.clear_faults()

    wait_for(lambda: len(stack.agent.state()["users"]) == len(emails), timeout=90, interval=0.5,
             what="every user at the Agent")
    status = wait_drained(stack, timeout=60)
    assert status["dead_letters"] == 0
    # Cut connections are either reopened by Django's health check or reported and retried
    # by the daemon ("database error" in its log); either way it keeps running.
    assert stack.processes["consumer0"].poll() is None
