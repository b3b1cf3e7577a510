"""The e2e Stack with what chaos needs on top: its own broker URL and crash-and-restart of processes."""

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import requests

from tests.e2e.harness import Stack, wait_for


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (gunicorn's workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: fields start after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class ChaosStack(Stack):
    """A Stack on a given broker, whose processes can be SIGKILLed and started again."""

    def __init__(
        self, workdir: Path, *, amqp_url: str, consumers: int = 2, extra_env: dict[str, str] | None = None
    ) -> None:
        super().__init__(
            workdir,
            consumers=consumers,
            extra_env={
                "AMQP_URL": amqp_url,
                "DJANGO_SETTINGS_MODULE": "tests.chaos.settings",
                # A short read-back horizon (15 s) so that late applies are undone within the drain.
                "AGENT_READ_BACK_DELAYS_SECONDS": "1,2,4,8",
                **(extra_env or {}),
            },
        )
        self.amqp_url = amqp_url

    def start_api(self) -> None:
        """Like Stack.start_api, but ready means "answers": a health check that reports a large
        backlog (503) after a crash is still a running API."""
        self._spawn(
            "api",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "project.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.api_port}",
                "--workers",
                "2",
                "--graceful-timeout",
                "5",
                "--access-logfile",
                "-",
            ],
        )
        wait_for(
            lambda: requests.get(f"{self.api_url}/api/health/", timeout=2).status_code < 600,
            timeout=60,
            what="the API to answer",
        )

    def crash(self, name: str) -> None:
        """kill -9 the process and everything it started (a crashed container)."""
        process = self.processes.pop(name)
        victims = [process.pid, *descendants(process.pid)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=30)
        # gunicorn's workers are not our children: wait until they are gone so the port is free.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in victims):
            time.sleep(0.05)

    def restart(self, name: str) -> None:
        if name == "api":
            self.start_api()
        elif name == "relay":
            self.start_relay()
        elif name.startswith("consumer"):
            self.start_consumer(int(name.removeprefix("consumer")))
        else:
            raise ValueError(name)

    def manage_json(self, *args: str) -> Any:
        return json.loads(self.manage(*args).stdout)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
