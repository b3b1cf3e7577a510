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


def test_a_connection_created_in_any_thread_logs_into_the_counter():
    class Connection:
        queries_limit = 9000
        queries_log = None
        force_debug_cursor = False

    connection = Connection()
    connection.queries_log = []
    statements._on_connection_created(sender=None, connection=connection)
    assert isinstance(connection.queries_log, statements.CountingLog) and connection.force_debug_cursor


def test_counts_and_statements_are_read_back_by_window(tmp_path):
    path = tmp_path / "consumer0.json"
    assert statements.read_count(path) is None
    path.write_text(json.dumps({"count": 7, "sent": [[1.0, "BEGIN"], [2.0, "UPDATE x"], [3.0, "COMMIT"]]}))
    assert statements.read_count(path) == 7
    assert statements.read_sent(path, since=1.5, until=3.0) == ["UPDATE x", "COMMIT"]
