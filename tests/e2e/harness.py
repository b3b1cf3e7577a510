"""Real processes on loopback for end-to-end tests: the Agent double, the API under gunicorn,
the consumer and (with AMQP_URL) the relay, sharing one throwaway database.

The database and broker come from the test run's environment: DATABASE_URL (PostgreSQL; a
fresh database is created per stack) or a SQLite file, and AMQP_URL (a fresh topology prefix
per stack) or the embedded bus.
"""
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from agent_bridge.devagent import LISTENING_LINE_RE
from tests.devagent_control import DevAgentControl

REPO = Path(__file__).resolve().parents[2]
SERVICE_TOKEN = "e2e-service-token-0123456789abcdef0123456789"
# The API's /metrics answers with this bearer token (tests read the bus state there).
METRICS_TOKEN = "e2e-metrics-token-0123456789abcdef0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll until `predicate()` is truthy; return its value or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}: last error {last_error!r}")


def throwaway_database(base_url: str, *, name: str, workdir: Path) -> tuple[str, Callable[[], None]]:
    """A fresh database for one stack and the function that drops it: a new PostgreSQL database
    next to `base_url`'s when it is PostgreSQL, else a SQLite file in `workdir`."""
    if not base_url.startswith(("postgres://", "postgresql://")):
        return f"sqlite:///{workdir / f'{name}.sqlite3'}", lambda: None
    import psycopg

    parts = urlsplit(base_url)
    admin_url = urlunsplit(parts._replace(scheme="postgresql"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlunsplit(parts._replace(path=f"/{name}")), drop


class Stack:
    def __init__(self, workdir: Path, *, consumers: int = 1, extra_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.processes: dict[str, subprocess.Popen] = {}
        self.consumer_count = consumers
        self.amqp_url = os.environ.get("AMQP_URL", "")
        self.prefix = f"kairos-e2e-{uuid.uuid4().hex[:10]}"
        self.database_url, self._drop_database = self._make_database()
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))},
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "e2e-" + uuid.uuid4().hex * 2,
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": self.database_url,
            "AMQP_URL": self.amqp_url,
            "BUS_PREFIX": self.prefix,
            "AGENT_SERVICE_TOKEN": SERVICE_TOKEN,
            "METRICS_TOKEN": METRICS_TOKEN,
            "AGENT_TIMEOUT_SECONDS": "2",
            "BUS_RETRY_DELAYS_SECONDS": "1,1,2,2,3,3,5,5,5,5",
            "BUS_IMMEDIATE_BACKOFF_MAX_SECONDS": "0.2",
            "BUS_OWNERSHIP_SECONDS": "6",
            # Read back after an uncertain Agent call within a 15 s horizon (default 187 s), so a
            # test that times calls out sees the profile `synced` again soon after.
            "AGENT_READ_BACK_DELAYS_SECONDS": "1,2,4,8",
            # Past the longest retry delay above, so a message the broker loses is published again.
            "BUS_REPUBLISH_AFTER_SECONDS": "30",
            "AMQP_PARTITIONS": "4",
            "THROTTLE_RATES": "off",
            "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "EMAIL_FILE_PATH": str(workdir / "emails"),
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.agent_control: DevAgentControl | None = None

    # --- database -------------------------------------------------------------
    def _make_database(self) -> tuple[str, Callable[[], None]]:
        return throwaway_database(
            os.environ.get("DATABASE_URL", ""), name=self.prefix.replace("-", "_"), workdir=self.workdir
        )

    # --- processes ------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(args, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process

    def manage(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def start_agent(self) -> None:
        log_path = self.workdir / "devagent.log"
        process = self._spawn(
            "devagent",
            [sys.executable, "-m", "agent_bridge.devagent", "--port", "0", "--control-port", "0", "--token",
             SERVICE_TOKEN],
        )

        def listening() -> Any:
            if process.poll() is not None:
                raise AssertionError(f"devagent exited: {log_path.read_text()}")
            return LISTENING_LINE_RE.search(log_path.read_text())

        match = wait_for(listening, timeout=15, what="devagent to listen")
        self.env["AGENT_BASE_URL"] = match["base_url"]
        self.agent_control = DevAgentControl(match["control_url"])

    @property
    def agent(self) -> DevAgentControl:
        assert self.agent_control is not None
        return self.agent_control

    def start_api(self) -> None:
        self._spawn(
            "api",
            # The image's configuration (multiprocess metrics, OpenTelemetry after the fork).
            [sys.executable, "-m", "gunicorn", "-c", "python:project.gunicorn_conf", "project.wsgi:application",
             "--bind", f"127.0.0.1:{self.api_port}",
             "--workers", "2", "--graceful-timeout", "5", "--access-logfile", "-"],
        )
        wait_for(lambda: requests.get(f"{self.api_url}/api/health/", timeout=2).ok, timeout=30, what="API health")

    def start_consumer(self, index: int = 0) -> None:
        self._spawn(f"consumer{index}", [sys.executable, "manage.py", "consume"])

    def start_relay(self) -> None:
        if self.amqp_url:
            self._spawn("relay", [sys.executable, "manage.py", "relay"])

    def start(self) -> "Stack":
        self.start_agent()
        self.manage("migrate", "--noinput")
        self.start_api()
        self.start_relay()
        for index in range(self.consumer_count):
            self.start_consumer(index)
        return self

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = 30) -> int:
        """Signal a process and wait for it; it is forgotten only once it has exited."""
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(sig)
        code = process.wait(timeout=timeout)
        del self.processes[name]
        return code

    def stop(self) -> None:
        """SIGTERM every process; one still running 15 s later is killed, and the stop fails: a
        daemon that does not stop on SIGTERM is a defect (deploys wait on it), not noise."""
        hung = []
        for name in list(self.processes):
            try:
                self.kill(name, signal.SIGTERM, timeout=15)
            except subprocess.TimeoutExpired:
                hung.append(name)
                self.kill(name, signal.SIGKILL)
        if self.amqp_url:
            self._delete_topology()
        self._drop_database()
        assert not hung, f"still running 15 s after SIGTERM: {', '.join(hung)}\n{self.logs()}"

    def _delete_topology(self) -> None:
        import pika

        try:
            connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        except pika.exceptions.AMQPError:
            return
        # Not transports.rabbitmq: the chaos CLI runs this without Django.
        from agent_bridge.transports.topology import Topology, topology_delete

        partitions = int(self.env["AMQP_PARTITIONS"])
        delays = [int(delay) for delay in self.env["BUS_RETRY_DELAYS_SECONDS"].split(",")]
        topology = Topology(prefix=self.prefix, partitions=partitions)
        topology_delete(connection.channel(), topology, retry_delays=delays)
        connection.close()

    def logs(self) -> str:
        return "\n".join(
            f"----- {path.name} -----\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.workdir.glob("*.log"))
        )

    # --- the API --------------------------------------------------------------
    def api(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Token {token}"
        return requests.request(method, f"{self.api_url}{path}", headers=headers, timeout=30, **kwargs)

    def bus_status(self) -> dict[str, Any]:
        import json

        return json.loads(self.manage("bus_status", "--json").stdout)

    def wait_drained(self, timeout: float = 60) -> dict[str, Any]:
        return wait_for(
            lambda: (status := self.bus_status())["backlog"] == 0 and status,
            timeout=timeout,
            interval=0.5,
            what="the bus to drain",
        )
