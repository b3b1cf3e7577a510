import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from throttling.models import Counter
from throttling.stores import DatabaseStore, RedisStore, StoreUnavailable, store_get

pytestmark = pytest.mark.django_db


def test_the_settings_choose_the_store(settings) -> None:
    settings.REDIS_URL = ""
    assert isinstance(store_get(), DatabaseStore)
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    assert isinstance(store_get(), RedisStore)
    assert store_get() is store_get()


def test_counts_up_from_one(throttle_store) -> None:
    assert [throttle_store.incr("k", 60) for _ in range(3)] == [1, 2, 3]
    assert throttle_store.incr("other", 60) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_increments_from_threads_are_all_counted(throttle_store) -> None:
    if isinstance(throttle_store, DatabaseStore) and connection.vendor == "sqlite":
        pytest.skip("the in-memory SQLite test database refuses concurrent writers; see the processes test")
    threads, per_thread = 8, 25
    seen: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def work() -> None:
        try:
            start.wait()
            values = [throttle_store.incr("contended", 60) for _ in range(per_thread)]
            with lock:
                seen.extend(values)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()  # this thread's own database connection

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    # Every increment saw a distinct value: none was lost or read twice.
    assert sorted(seen) == list(range(1, threads * per_thread + 1))


WORKER = """
import json, sys
import django
django.setup()
from throttling.stores import store_get
if sys.argv[1] == "migrate":
    from django.core.management import call_command
    call_command("migrate", "throttling", verbosity=0)
else:
    print(json.dumps([store_get().incr("contended", 60) for _ in range(int(sys.argv[1]))]))
"""


@pytest.mark.django_db(transaction=True)
def test_concurrent_increments_from_processes_are_all_counted(throttle_store, tmp_path: Path) -> None:
    """What gunicorn does: several processes, each with its own connection, one counter."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings_test", "REDIS_URL": django_settings.REDIS_URL}
    env["THROTTLE_KEY_PREFIX"] = django_settings.THROTTLE_KEY_PREFIX
    root = Path(__file__).resolve().parents[2]
    run = [sys.executable, "-c", WORKER]
    if isinstance(throttle_store, DatabaseStore):
        if connection.vendor == "sqlite":  # the scripts/dev default: a file, WAL, several processes
            env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
            subprocess.run([*run, "migrate"], env=env, cwd=root, check=True, timeout=120)
        else:  # the test database this test runs on
            env["DATABASE_URL"] = _database_url()
    processes, per_process = 4, 50
    workers = [
        subprocess.Popen([*run, str(per_process)], env=env, cwd=root, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    seen = []
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        seen += json.loads(out)
    assert sorted(seen) == list(range(1, processes * per_process + 1))


def _database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def test_the_embedded_store_prunes_only_expired_windows(throttle_store, throttle_clock) -> None:
    if not isinstance(throttle_store, DatabaseStore):
        pytest.skip("embedded store only (Redis expires keys itself: see the TTL test)")
    throttle_store.incr("short", 60)
    throttle_store.incr("long", 3600)
    throttle_clock.advance(120)
    throttle_store._next_prune = 0  # due now
    throttle_store.incr("new", 60)
    assert set(Counter.objects.values_list("digest", flat=True)) == {"long", "new"}


def test_many_counters_are_all_kept(throttle_store) -> None:
    """Nothing culls: far past the old cache's 300 entries every count is still there."""
    for i in range(1000):
        throttle_store.incr(f"k{i}", 600)
    assert all(throttle_store.incr(f"k{i}", 600) == 2 for i in range(0, 1000, 37))


def test_redis_keys_expire_with_their_window_and_clear_keeps_other_keys(throttle_store) -> None:
    if not isinstance(throttle_store, RedisStore):
        pytest.skip("Redis store only")
    throttle_store.incr("k", 42)
    ttl = throttle_store.client.ttl(throttle_store.prefix + "k")
    assert 40 <= ttl <= 42
    throttle_store.incr("k", 1000)  # a later hit does not extend the window
    assert throttle_store.client.ttl(throttle_store.prefix + "k") <= 42
    throttle_store.client.persist(throttle_store.prefix + "k")  # however it lost its expiry...
    assert throttle_store.incr("k", 30) == 3
    assert 0 < throttle_store.client.ttl(throttle_store.prefix + "k") <= 30  # ...the next hit restores one
    foreign = f"not-ours-{uuid.uuid4().hex}"
    throttle_store.client.set(foreign, "1", ex=60)
    try:
        throttle_store.clear()
        assert throttle_store.client.exists(throttle_store.prefix + "k") == 0
        assert throttle_store.client.exists(foreign) == 1
    finally:
        throttle_store.client.delete(foreign)


def test_a_redis_that_does_not_answer_is_store_unavailable() -> None:
    store = RedisStore("redis://127.0.0.1:9/0", prefix=f"t-{os.getpid()}:")
    with pytest.raises(StoreUnavailable):
        store.incr("k", 60)
