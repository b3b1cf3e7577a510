"""The processes under test, on loopback: the Agent double, gunicorn, the relay and consumers.

One throwaway PostgreSQL database (or SQLite file) and one RabbitMQ topology prefix per run;
both are removed at the end. Modelled on tests/e2e/harness.py, with what a benchmark needs on
top: the bench settings module, a gunicorn worker count, starting and stopping the bus
processes between measurements, and purging whatever a measurement left queued.
"""
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from agent_bridge.devagent import LISTENING_LINE_RE
from tests.e2e.harness import free_port, throwaway_database, wait_for

REPO = Path(__file__).resolve().parents[1]
SERVICE_TOKEN = "bench-service-token-" + "0123456789abcdef" * 2
MAX_PARTITIONS = 4  # the most AMQP_PARTITIONS a bench measurement uses


class Stack:
    def __init__(self, workdir: Path, *, database_url: str, amqp_url: str, api_workers: int) -> None:
        self.workdir = workdir
        self.amqp_url = amqp_url
        self.api_workers = api_workers
        self.run_id = uuid.uuid4().hex[:8]
        self.prefix = f"kairos-bench-{self.run_id}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.database_url, self._drop_database = self._make_database(database_url)
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.agent_url = ""
        self.control_url = ""
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))},
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "bench-" + uuid.uuid4().hex * 2,
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": self.database_url,
            "AMQP_URL": "",
            "BUS_PREFIX": self.prefix,
            "AGENT_SERVICE_TOKEN": SERVICE_TOKEN,
            "THROTTLE_RATES": "off",
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "PYTHONUNBUFFERED": "1",
        }

    # --- database ---------------------------------------------------------------
    def _make_database(self, base: str) -> tuple[str, Callable[[], None]]:
        return throwaway_database(base, name=f"kairos_bench_{self.run_id}", workdir=self.workdir)

    @property
    def database_kind(self) -> str:
        return "postgresql" if self.database_url.startswith("postgres") else "sqlite"

    # --- processes --------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None,
               cwd: Path = REPO) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(args, cwd=cwd, env=env or self.env, stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process

    def log_text(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def manage(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True, text=True,
            check=True, timeout=timeout,
        )

    def start_agent(self) -> None:
        process = self._spawn(
            "devagent",
            [sys.executable, "-m", "agent_bridge.devagent", "--port", "0", "--control-port", "0",
             "--token", SERVICE_TOKEN],
        )

        def listening() -> Any:
            if process.poll() is not None:
                raise RuntimeError(f"devagent exited: {self.log_text('devagent')}")
            return LISTENING_LINE_RE.search(self.log_text("devagent"))

        match = wait_for(listening, timeout=15, what="the Agent double to listen")
        self.agent_url, self.control_url = match["base_url"], match["control_url"]
        self.env["AGENT_BASE_URL"] = self.agent_url

    def start_api(self) -> None:
        self._spawn(
            "api",
            [sys.executable, "-m", "gunicorn", "project.wsgi:application", "--bind", f"127.0.0.1:{self.api_port}",
             "--workers", str(self.api_workers), "--timeout", "60", "--graceful-timeout", "5"],
        )
        wait_for(lambda: requests.get(f"{self.api_url}/api/health/", timeout=2).status_code < 500, timeout=60,
                 what="the API to answer")

    def start_api_variant(self, name: str, extra_env: dict[str, str], *, code: Path = REPO) -> str:
        """A second gunicorn, same settings plus `extra_env` (what-if measurements), running the code in `code`
        (another commit's export, for a before/after in one run); returns its base URL."""
        port = free_port()
        self._spawn(
            name,
            [sys.executable, "-m", "gunicorn", "project.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", str(self.api_workers), "--timeout", "60", "--graceful-timeout", "5"],
            env={**self.env, **extra_env},
            cwd=code,
        )
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(f"{url}/api/health/", timeout=2).status_code < 500, timeout=60,
                 what=f"{name} to answer")
        return url

    def bus_env(self, *, amqp: bool, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**self.env, "AMQP_URL": self.amqp_url if amqp else "", **(extra or {})}

    def start_bus(self, *, amqp: bool, consumers: int, command: str = "consume",
                  extra_env: dict[str, str] | None = None, counted: Path | None = None) -> None:
        """Start the relay (AMQP) and `consumers` consumer processes, and wait until they consume.

        `extra_env` (e.g. AMQP_PARTITIONS, BUS_CONSUMER_CONCURRENCY) goes to all of them; with
        `counted`, each runs under bench.statements and writes its statement count to
        `counted`/<process>.json."""
        env = self.bus_env(amqp=amqp, extra=extra_env)

        def argv(name: str, *args: str) -> list[str]:
            if counted is None:
                return [sys.executable, "manage.py", *args]
            return [sys.executable, "-m", "bench.statements", str(counted / f"{name}.json"), *args]

        if amqp:
            self._spawn("relay", argv("relay", "relay"), env=env)
        for index in range(consumers):
            self._spawn(f"consumer{index}", argv(f"consumer{index}", command), env=env)
        for index in range(consumers):
            wait_for(lambda i=index: "consumer started" in self.log_text(f"consumer{i}"), timeout=60,
                     what=f"consumer{index} to start")
        if amqp:
            wait_for(lambda: "relay started" in self.log_text("relay"), timeout=60, what="the relay to start")
            wait_for(lambda: self.queue_consumers() >= consumers, timeout=30, what="consumers on the work queue")

    def stop_bus(self) -> None:
        for name in [n for n in self.processes if n.startswith(("consumer", "relay"))]:
            self.stop_process(name)
        for path in self.workdir.glob("consumer*.log"):
            path.rename(path.with_suffix(f".{time.time_ns()}.old"))
        relay_log = self.workdir / "relay.log"
        if relay_log.exists():
            relay_log.rename(relay_log.with_suffix(f".{time.time_ns()}.old"))

    def stop_process(self, name: str) -> None:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def pids(self, prefix: str) -> list[int]:
        return [p.pid for n, p in self.processes.items() if n.startswith(prefix)]

    def stop(self) -> None:
        for name in list(self.processes):
            with contextlib.suppress(Exception):  # best-effort teardown
                self.stop_process(name)
        if self.amqp_url:
            self.delete_topology()
        self._drop_database()

    # --- RabbitMQ ---------------------------------------------------------------
    def _channel(self):
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        return connection, connection.channel()

    def queue_names(self) -> list[str]:
        from django.conf import settings

        from agent_bridge.transports.rabbitmq import Topology

        # The bench varies AMQP_PARTITIONS per measurement (up to MAX_PARTITIONS): purge them all.
        topology = Topology(prefix=self.prefix, partitions=max(settings.AMQP_PARTITIONS, MAX_PARTITIONS))
        names = [*topology.work_queues, topology.dead_queue]
        names += [topology.retry_queue(d) for d in settings.BUS_RETRY_DELAYS_SECONDS]
        return names

    def queue_consumers(self) -> int:
        """Consumers subscribed to the first partition queue (every consumer subscribes to all)."""
        connection, channel = self._channel()
        try:
            return channel.queue_declare(f"{self.prefix}.work.0", passive=True).method.consumer_count
        finally:
            connection.close()

    def purge_queues(self) -> None:
        import pika

        if not self.amqp_url:
            return
        connection, channel = self._channel()
        try:
            for name in self.queue_names():
                try:
                    channel.queue_purge(name)
                except pika.exceptions.ChannelClosedByBroker:
                    channel = connection.channel()  # the queue was never declared
        finally:
            connection.close()

    def delete_topology(self) -> None:
        import pika

        try:
            connection, channel = self._channel()
        except pika.exceptions.AMQPError:
            return
        try:
            for name in self.queue_names():
                channel.queue_delete(name)
            for exchange in (f"{self.prefix}.events", f"{self.prefix}.dead"):
                channel.exchange_delete(exchange)
        except pika.exceptions.AMQPError:
            pass
        finally:
            if connection.is_open:
                connection.close()

    # --- the Agent double's control port ---------------------------------------------
    def control(self, method: str, path: str, payload: Any = None) -> Any:
        response = requests.request(method, f"{self.control_url}{path}", json=payload, timeout=30)
        response.raise_for_status()
        return response.json()

    def agent_requests(self) -> list[dict[str, Any]]:
        return self.control("GET", "/requests")["requests"]
