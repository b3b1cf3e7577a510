"""bench.statements: the statement count of a bus process (no servers)."""
import json
import time

from bench import statements


def test_every_logged_statement_is_counted_with_its_send_time(tmp_path):
    before = statements._count[0]
    log = statements.CountingLog(maxlen=2)
    t0 = time.time()
    for sql in ("BEGIN", "SELECT 1", "COMMIT"):
        log.append({"sql": sql, "time": "0.000"})
    assert statements._count[0] - before == 3  # beyond the deque's maxlen too
    assert [sql for at, sql in list(statements._sent)[-3:] if at >= t0] == ["BEGIN", "SELECT 1", "COMMIT"]


class _Ops:
    def last_executed_query(self, cursor, sql, params):
        return None if sql.startswith("prepared") else f"{sql} {params}"


class _Connection:
    queries_limit = 9000
    force_debug_cursor = False

    def __init__(self) -> None:
        self.queries_log = []
        self.ops = _Ops()


def test_a_connection_created_in_any_thread_logs_into_the_counter():
    connection = _Connection()
    statements._on_connection_created(sender=None, connection=connection)
    assert isinstance(connection.queries_log, statements.CountingLog) and connection.force_debug_cursor


def test_a_statement_run_as_a_prepared_one_is_logged_by_its_own_text():
    # Django logs what psycopg says it sent, None for a prepared statement: the report showed `None`.
    connection = _Connection()
    statements._on_connection_created(sender=None, connection=connection)
    assert connection.ops.last_executed_query(None, "prepared SELECT 1", []) == "prepared SELECT 1"
    assert connection.ops.last_executed_query(None, "SELECT %s", [1]) == "SELECT %s [1]"


def test_counts_and_statements_are_read_back_by_window(tmp_path):
    path = tmp_path / "consumer0.json"
    assert statements.read_count(path) is None
    path.write_text(json.dumps({"count": 7, "sent": [[1.0, "BEGIN"], [2.0, "UPDATE x"], [3.0, "COMMIT"]]}))
    assert statements.read_count(path) == 7
    assert statements.read_sent(path, since=1.5, until=3.0) == ["UPDATE x", "COMMIT"]
