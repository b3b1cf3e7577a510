"""A RabbitMQ node of the chaos run's own, so that stopping and killing it disturbs nobody else.

It is driven through scripts/services.sh (start-rabbitmq / stop-rabbitmq / kill-rabbitmq) with a
private state folder, node name and AMQP port; its data folder survives restarts, so durable
queues and persistent messages do too, exactly like a production broker that is restarted.
"""

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.e2e.harness import REPO

SERVICES_SCRIPT = Path(os.environ.get("KAIROS_SERVICES_SCRIPT") or REPO / "scripts" / "services.sh")
# services.sh puts the Erlang distribution port at AMQP port + 20000.
DIST_PORT_OFFSET = 20000


def rabbitmq_missing_reason() -> str | None:
    """Why this machine cannot run a broker node of its own, or None when it can."""
    if not SERVICES_SCRIPT.exists():
        return f"{SERVICES_SCRIPT} is missing"
    if not (
        shutil.which("rabbitmq-server")
        or Path("/usr/sbin/rabbitmq-server").exists()
        or Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists()
    ):
        return "rabbitmq-server is not installed (bash scripts/services.sh install)"
    return None


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port_pair(rng: random.Random) -> int:
    """An AMQP port whose distribution port (+20000) is free as well."""
    for _ in range(200):
        port = rng.randint(21000, 29999)
        if _port_free(port) and _port_free(port + DIST_PORT_OFFSET):
            return port
    raise RuntimeError("no free port pair for the chaos broker")


class OwnBroker:
    """Start, stop, kill and restart a private RabbitMQ node."""

    def __init__(self) -> None:
        # Under /tmp with a short path: the broker runs as the `rabbitmq` user when we are root,
        # and pytest's tmp folders (mode 0700 parents) would be out of its reach.
        self.state_dir = Path(tempfile.mkdtemp(prefix="kairos-chaos-"))
        self.port = _free_port_pair(random.Random())
        self.node = f"kairos-chaos-{uuid.uuid4().hex[:8]}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"
        self.log_path = self.state_dir / "services.log"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAIROS_SERVICES_DIR": str(self.state_dir),
            "KAIROS_AMQP_PORT": str(self.port),
            "KAIROS_RABBITMQ_NODENAME": self.node,
        }

    def rabbitmqctl(self, *args: str, timeout: float = 60) -> str:
        """What `rabbitmqctl <args>` prints for this node."""
        result = subprocess.run(
            ["bash", str(SERVICES_SCRIPT), "rabbitmqctl", *args],
            env=self._env(), capture_output=True, text=True, timeout=timeout, check=True,
        )
        return result.stdout

    def _run(self, command: str, timeout: float = 120) -> None:
        with open(self.log_path, "ab") as log:
            result = subprocess.run(
                ["bash", str(SERVICES_SCRIPT), command],
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        if result.returncode != 0:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"services.sh {command} failed (rc {result.returncode}):\n{tail}")

    def start(self) -> "OwnBroker":
        self._run("start-rabbitmq")
        return self

    def stop(self) -> None:
        self._run("stop-rabbitmq")

    def kill(self) -> None:
        self._run("kill-rabbitmq")

    def destroy(self) -> None:
        """Stop the node and remove its data (end of the run)."""
        try:
            self._run("stop-rabbitmq")
        except (RuntimeError, subprocess.SubprocessError):
            # A failed graceful stop must not leave a node running after the test: SIGKILL it.
            pid_file = self.state_dir / "rabbitmq" / "rabbit.pid"
            pid = pid_file.read_text().strip() if pid_file.exists() else ""
            if pid.isdigit():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            raise
        finally:
            shutil.rmtree(self.state_dir, ignore_errors=True)
