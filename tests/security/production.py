"""Fresh processes with production settings, for the deploy tests (test_deploy.py,
test_deploy_secrets.py): the test settings swap in a fast hasher and debug, so they prove
nothing about production."""
import os
import secrets
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHECK_DEPLOY = ["manage.py", "check", "--deploy", "--fail-level", "WARNING"]


def production_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_", "AGENT_", "CORS_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="api.kairos.example",
        AGENT_SERVICE_TOKEN=secrets.token_urlsafe(48),
    )
    env.update(overrides)
    return env


def runs_at_once(runs: dict[str, tuple[list[str], dict[str, str]]], *, timeout: float) -> dict[
    str, subprocess.CompletedProcess
]:
    """Run each `name: (python arguments, environment overrides)` in a fresh interpreter, all at
    once (each imports Django: seconds on a busy CI box), and wait for every one."""
    processes = {
        name: subprocess.Popen([sys.executable, *args], cwd=REPO, env=production_env(**overrides),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (args, overrides) in runs.items()
    }
    results = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=timeout)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return results
