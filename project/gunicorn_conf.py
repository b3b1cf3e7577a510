"""gunicorn's configuration for the API: `gunicorn -c python:project.gunicorn_conf project.wsgi`
(the Dockerfile's command). Flags on the command line still override it.

- Prometheus multiprocess mode: each worker keeps its metric values in files under
  PROMETHEUS_MULTIPROC_DIR and GET /metrics sums them, so a scrape answered by any worker counts
  every worker's requests. The variable is set here, in the master, before any worker imports
  prometheus_client; a dead worker's files are marked (child_exit) so its live-gauge values go.
- OpenTelemetry (only with OTEL_EXPORTER_OTLP_ENDPOINT): started in each worker after the fork
  (post_fork), because the exporter's thread and connections cannot cross a fork.
"""
import os
import shutil
import tempfile
from pathlib import Path

_OWN_DIR = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
METRICS_DIR = Path(
    os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), f"kairos-metrics-{os.getpid()}")
    )
)


def on_starting(server) -> None:
    # Files left by an earlier run in the same folder would add its counts to this one's.
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for leftover in METRICS_DIR.glob("*.db"):
        leftover.unlink()


def post_fork(server, worker) -> None:
    from project import tracing

    tracing.otel_init(service_name="kairos-api")


def worker_exit(server, worker) -> None:
    from project import tracing

    tracing.otel_shutdown()  # flushes the spans still queued


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if _OWN_DIR:
        shutil.rmtree(METRICS_DIR, ignore_errors=True)
