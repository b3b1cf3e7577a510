"""The README's first command, `scripts/dev`, as a user runs it: up, a signup reaches the
Agent double, Ctrl-C stops everything; and a dying child takes the others down."""
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import REPO, free_port, wait_for

pytestmark = pytest.mark.e2e


@dataclass
class DevRun:
    process: subprocess.Popen
    output: Path
    api_url: str
    control_url: str
    ports: tuple[int, int, int]

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def children(self) -> dict[int, str]:
        """pid → command line of the processes scripts/dev started (Linux /proc)."""
        found = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                if ppid == self.process.pid:
                    found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError, ValueError):
                continue
        return found


def _refused(port: int) -> bool:
    try:
        requests.get(f"http://127.0.0.1:{port}/", timeout=1)
    except requests.ConnectionError:
        return True
    return False


@pytest.fixture
def dev_run(tmp_path: Path) -> Iterator[DevRun]:
    api_port, agent_port, control_port = free_port(), free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))},
        "KAIROS_PYTHON": sys.executable,  # the test venv has the requirements: no .venv to build
        "KAIROS_PORT": str(api_port),
        "KAIROS_AGENT_PORT": str(agent_port),
        "KAIROS_AGENT_CONTROL_PORT": str(control_port),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'dev.sqlite3'}",
    }
    output = tmp_path / "dev.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [str(REPO / "scripts" / "dev")], cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    run = DevRun(process, output, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{control_port}",
                 (api_port, agent_port, control_port))
    try:
        wait_for(lambda: "Press Ctrl-C" in run.text() or process.poll() is not None, timeout=120,
                 what="scripts/dev to come up")
        assert process.poll() is None, run.text()
        yield run
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        print(run.text()[-6000:])


def test_dev_brings_the_stack_up_a_signup_reaches_the_double_and_ctrl_c_stops_all(dev_run: DevRun) -> None:
    text = dev_run.text()
    for url in ("/api/docs/", "/admin/", "/api/health/", f"{dev_run.control_url}/state"):
        assert url in text
    assert requests.get(f"{dev_run.api_url}/api/health/", timeout=5).ok
    children = dev_run.children()
    assert len(children) == 4, children  # API, consumer, reconciler, Agent double

    response = requests.post(
        f"{dev_run.api_url}/api/signup/",
        json={"username": "ada", "email": "ada@example.com", "password": "a-long-passphrase-42"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    users = wait_for(lambda: requests.get(f"{dev_run.control_url}/state", timeout=5).json()["users"], timeout=60,
                     what="the user at the Agent double")
    assert len(users) == 1
    log = requests.get(f"{dev_run.control_url}/requests", timeout=5).json()["requests"]
    # The per-run service token reached both sides: the double accepted the consumer's calls.
    assert all(entry["token_valid"] for entry in log if entry["path"].startswith("/users/"))

    dev_run.process.send_signal(signal.SIGINT)
    assert dev_run.process.wait(timeout=60) == 0, dev_run.text()
    assert "stopped" in dev_run.text()
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert all(_refused(port) for port in dev_run.ports)


def test_when_one_process_dies_dev_stops_the_others_and_fails(dev_run: DevRun) -> None:
    consumer = next(pid for pid, cmd in dev_run.children().items() if "manage.py consume" in cmd)
    os.kill(consumer, signal.SIGKILL)

    assert dev_run.process.wait(timeout=60) != 0
    assert "consumer exited" in dev_run.text()
    assert all(_refused(port) for port in dev_run.ports)
