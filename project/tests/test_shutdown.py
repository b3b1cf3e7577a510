"""The stop flag of every long-running process: a SIGTERM or SIGINT that lands while the main
thread holds the flag's own lock (as it does inside `stop.wait()` while it wakes up, which is
where an idle daemon spends its time) must still stop the process.

A handler that called `Event.set()` itself deadlocked there: the consumer of a CI run logged
"received SIGTERM" and then hung until it was killed. Each case runs in a process of its own,
since a deadlocked main thread cannot be rescued from inside.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import os, signal, sys
{setup}
from {module} import {factory} as make_stop_flag

stop = make_stop_flag()
with stop._cond:  # the event's own lock, held as inside stop.wait() while it wakes up
    os.kill(os.getpid(), signal.{signame})
    for _ in range(10_000):  # the handler runs on this thread, at a bytecode boundary in here
        pass
print("handler returned", flush=True)
sys.exit(0 if stop.wait(5) else 3)
"""

DJANGO_SETUP = "import django; django.setup()"

FLAGS = [
    pytest.param("project.shutdown", "stop_on_signals", "", id="shared"),
    pytest.param("consumers.runners", "stop_flag_on_signals", DJANGO_SETUP, id="consume-relay-housekeeping"),
]


def _run(module: str, factory: str, setup: str, signame: str) -> subprocess.CompletedProcess:
    script = SCRIPT.format(module=module, factory=factory, setup=setup, signame=signame)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings_test", "PYTHONPATH": str(REPO)}
    try:
        return subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=20)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the signal handler deadlocked on the stop flag's lock: {exc.stdout!r} {exc.stderr!r}")


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize(("module", "factory", "setup"), FLAGS)
def test_a_signal_landing_while_the_flag_is_locked_still_stops_the_process(module, factory, setup, signame) -> None:
    done = _run(module, factory, setup, signame)
    assert "handler returned" in done.stdout, done.stderr
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)


def test_the_daemons_announce_the_signal_they_stop_on() -> None:
    done = _run("consumers.runners", "stop_flag_on_signals", DJANGO_SETUP, "SIGTERM")
    assert done.returncode == 0, done.stderr
    assert "received SIGTERM, stopping after the event in hand" in done.stdout + done.stderr


def test_the_flag_is_set_by_a_real_signal_from_outside(tmp_path) -> None:
    """Not only self-sent: another process's SIGTERM, while the main thread sleeps in stop.wait()."""
    script = (
        "import sys\nfrom project.shutdown import stop_on_signals\n"
        "stop = stop_on_signals(lambda signum: print('announced', signum.name, flush=True))\n"
        "print('ready', flush=True)\nsys.exit(0 if stop.wait(30) else 3)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == "announced SIGTERM\n"
    finally:
        process.kill()
        process.wait()
