"""Structural checks of the deployment files: docker-compose.yml, Dockerfile, .env.example, .dockerignore.

No Docker engine is needed. The compose file is read with PyYAML (installed with
drf-spectacular); when a `docker-compose` (1.29) or `docker compose` binary is on the PATH, or
named by KAIROS_DOCKER_COMPOSE, the file is also validated with `config -q`.
"""

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with drf-spectacular)")

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERIGNORE = REPO / ".dockerignore"
SETTINGS = REPO / "project" / "settings.py"

APP_PROCESSES = ("web", "relay", "consumer", "reconciler")
ONE_SHOT = {"migrate"}
LONG_RUNNING_RESTART = {"always", "unless-stopped", "on-failure"}

# DESIGN.md §3, plus the queue type the compose stack sets.
DESIGN_VARIABLES = (
    "DJANGO_SECRET_KEY",
    "DJANGO_DEBUG",
    "DJANGO_ALLOWED_HOSTS",
    "DATABASE_URL",
    "AMQP_URL",
    "AGENT_BASE_URL",
    "AGENT_SERVICE_TOKEN",
    "AGENT_TIMEOUT_SECONDS",
    "CORS_ALLOWED_ORIGINS",
    "FRONTEND_BASE_URL",
    "THROTTLE_RATES",
    "EMAIL_BACKEND",
    "EMAIL_FILE_PATH",
    "EMAIL_HOST",
    "EMAIL_PORT",
    "EMAIL_HOST_USER",
    "EMAIL_HOST_PASSWORD",
    "EMAIL_USE_TLS",
    "DEFAULT_FROM_EMAIL",
    "AMQP_QUEUE_TYPE",
)
SECRET_NAME = re.compile(r"(PASSWORD|PASS|SECRET|TOKEN|_KEY)$")
URL_PASSWORD = re.compile(r"://[^:/@\s]+:([^@\s]+)@")
INTERPOLATION = re.compile(r"^\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}$")


# ------------------------------------------------------------------ readers


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def env_example() -> dict[str, tuple[str, bool]]:
    """NAME -> (value, active) for every `NAME=value` line of .env.example, commented out or not."""
    entries: dict[str, tuple[str, bool]] = {}
    for raw in ENV_EXAMPLE.read_text().splitlines():
        line = raw.strip()
        active = not line.startswith("#")
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match and (match.group(1) not in entries or active):
            entries[match.group(1)] = (match.group(2), active)
    return entries


def depends_on(service: dict) -> dict[str, str]:
    """depends_on as {service: condition} (the list form means service_started)."""
    value = service.get("depends_on") or {}
    if isinstance(value, list):
        return {name: "service_started" for name in value}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in value.items()}


def command_of(service: dict) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def environment_of(service: dict) -> dict[str, str]:
    value = service.get("environment") or {}
    if isinstance(value, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in value)
    return {key: "" if val is None else str(val) for key, val in value.items()}


# ------------------------------------------------------------------ docker-compose.yml


def test_the_stack_has_every_process_of_the_design(services):
    assert set(services) >= {"postgres", "rabbitmq", "migrate", "web", "relay", "consumer", "devagent"}


def test_every_service_restarts_unless_it_is_a_one_shot(services):
    for name, service in services.items():
        restart = str(service.get("restart", "no"))
        if name in ONE_SHOT:
            assert restart == "no", f"{name} is a one-shot job and must not be restarted"
        else:
            assert restart in LONG_RUNNING_RESTART, f"{name}: restart policy {restart!r}"


def test_app_processes_wait_for_healthy_backends_and_applied_migrations(services):
    for name in APP_PROCESSES:
        conditions = depends_on(services[name])
        assert conditions.get("postgres") == "service_healthy", name
        assert conditions.get("rabbitmq") == "service_healthy", name
        assert conditions.get("migrate") == "service_completed_successfully", name


def test_app_processes_count_throttles_in_the_redis_service(services):
    redis = services["redis"]
    assert redis["image"].startswith("redis:7") and redis.get("healthcheck", {}).get("test")
    assert "noeviction" in command_of(redis)  # an evicted count is a reopened door
    assert not redis.get("ports"), "Redis has no password: it must stay on the compose network"
    for name in ("web", "consumer"):
        assert environment_of(services[name]).get("REDIS_URL") == "redis://redis:6379/0", name
        assert depends_on(services[name]).get("redis") == "service_healthy", name


def test_migrate_is_a_one_shot_that_applies_migrations_once_postgres_is_healthy(services):
    migrate = services["migrate"]
    assert command_of(migrate)[:3] == ["python", "manage.py", "migrate"]
    assert "--noinput" in command_of(migrate)
    assert depends_on(migrate).get("postgres") == "service_healthy"


def test_backends_have_health_checks_and_named_volumes(compose, services):
    named_volumes = set(compose.get("volumes") or {})
    expected_data_dirs = {"postgres": "/var/lib/postgresql/data", "rabbitmq": "/var/lib/rabbitmq"}
    for name, data_dir in expected_data_dirs.items():
        service = services[name]
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        mounts = [str(volume) for volume in service.get("volumes", [])]
        sources = {mount.split(":", 1)[0] for mount in mounts if mount.endswith(":" + data_dir)}
        assert sources & named_volumes, f"{name}: {data_dir} is not on a named volume ({mounts})"
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["rabbitmq"]["image"].startswith("rabbitmq:4") and "management" in services["rabbitmq"]["image"]
    assert " ".join(services["rabbitmq"]["healthcheck"]["test"]).endswith("rabbitmq-diagnostics -q ping")
    # the node name (rabbit@<hostname>) names the data folder: it must not change on re-creation
    assert services["rabbitmq"].get("hostname")


def test_web_serves_gunicorn_and_its_health_check_probes_the_health_endpoint(services):
    web = services["web"]
    command = command_of(web)
    assert not command or command[0] == "gunicorn", "web runs the image's gunicorn command"
    assert "/api/health/" in " ".join(web["healthcheck"]["test"])
    assert any(str(port).endswith(":8000") for port in web.get("ports", []))


def test_processes_run_the_documented_commands_and_those_commands_exist(services):
    assert command_of(services["relay"]) == ["python", "manage.py", "relay"]
    assert command_of(services["consumer"]) == ["python", "manage.py", "consume"]
    assert command_of(services["reconciler"]) == ["python", "manage.py", "reconcile_agent", "--continuous"]
    devagent = " ".join(command_of(services["devagent"]))
    assert devagent == "python -m agent_bridge.devagent --host 0.0.0.0 --port 4021 --control-port 4022"
    for name in ("relay", "consume", "reconcile_agent"):
        found = list(REPO.glob(f"*/management/commands/{name}.py"))
        assert found, f"docker-compose.yml runs `manage.py {name}`, which no app defines"
    assert (REPO / "agent_bridge" / "devagent.py").exists() or (REPO / "agent_bridge" / "devagent").is_dir()


def test_the_agent_double_runs_only_under_the_dev_profile(services):
    assert services["devagent"].get("profiles") == ["dev"]
    for name, service in services.items():
        if name != "devagent":
            assert not service.get("profiles"), f"{name} would not start with a plain `up`"
            assert "devagent" not in depends_on(service), f"{name} cannot depend on a dev-only service"


def test_application_services_take_their_configuration_from_the_env_file(services):
    for name in (*APP_PROCESSES, "migrate", "devagent"):
        env_file = services[name].get("env_file")
        env_files = [env_file] if isinstance(env_file, str) else list(env_file or [])
        assert ".env" in env_files, name
    for name in APP_PROCESSES:
        assert environment_of(services[name]).get("AMQP_QUEUE_TYPE") == "${AMQP_QUEUE_TYPE:-quorum}"


def test_compose_holds_no_literal_secret(services):
    for name, service in services.items():
        for key, value in environment_of(service).items():
            if SECRET_NAME.search(key):
                assert INTERPOLATION.match(value), f"{name}: {key} must come from .env, not be written here"
            for password in URL_PASSWORD.findall(value):
                assert INTERPOLATION.match(password), f"{name}: {key} has a literal password"
    assert "change-me" not in yaml.safe_dump(services), "a placeholder from .env.example was copied in"


def test_every_image_is_pinned_to_a_tag_other_than_latest(services):
    for name, service in services.items():
        image = service.get("image")
        if image is None:
            assert service.get("build"), f"{name} has neither image nor build"
            continue
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", f"{name}: image {image!r} needs a tag other than latest"


def test_every_interpolated_variable_is_documented_in_env_example():
    documented = env_example()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    assert used, "expected ${...} values in docker-compose.yml"
    missing = sorted(used - set(documented))
    assert not missing, f"docker-compose.yml uses {missing}, which .env.example does not document"


def _docker_compose_command() -> list[str] | None:
    if os.environ.get("KAIROS_DOCKER_COMPOSE"):
        return shlex.split(os.environ["KAIROS_DOCKER_COMPOSE"])
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_docker_compose_accepts_the_file(tmp_path):
    command = _docker_compose_command()
    if command is None:
        pytest.skip("no docker-compose / `docker compose` on this machine (set KAIROS_DOCKER_COMPOSE to one)")
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    for profile_args in ([], ["--profile", "dev"]):
        result = subprocess.run(
            [*command, "-f", "docker-compose.yml", *profile_args, "config", "-q"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr or result.stdout


# ------------------------------------------------------------------ Dockerfile


def test_dockerfile_uses_a_pinned_python_base_image():
    bases = [arguments.split()[0] for keyword, arguments in dockerfile_instructions() if keyword == "FROM"]
    assert bases, "no FROM"
    for base in bases:
        assert ":" in base and not base.endswith(":latest"), base
    assert bases[-1].startswith("python:3.11-slim")


def test_dockerfile_runs_as_a_non_root_user():
    users = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "USER"]
    assert users, "the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_dockerfile_installs_the_pinned_requirements_and_collects_static_files():
    instructions = dockerfile_instructions()
    assert any(k == "COPY" and "requirements.txt" in a for k, a in instructions)
    runs = [arguments for keyword, arguments in instructions if keyword == "RUN"]
    assert any(re.search(r"pip install .*-r requirements\.txt", run) for run in runs)
    assert any("manage.py collectstatic" in run for run in runs)


def test_dockerfile_serves_the_wsgi_app_with_gunicorn_on_port_8000():
    cmd = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "CMD"][-1]
    assert "gunicorn" in cmd and "project.wsgi:application" in cmd
    assert "0.0.0.0:8000" in cmd
    assert not re.search(r"(--workers|-w)\b", cmd), "workers come from WEB_CONCURRENCY"


def test_dockerfile_bakes_in_no_secret():
    for keyword, arguments in dockerfile_instructions():
        if keyword in {"ENV", "ARG"}:
            assert not re.search(r"(SECRET|PASSWORD|TOKEN)\w*\s*=", arguments), arguments


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image():
    patterns = {line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip()}
    assert {".git", ".env", ".venv"} <= patterns
    assert any(pattern.startswith("db.sqlite3") for pattern in patterns)


# ------------------------------------------------------------------ .env.example


def test_env_example_documents_every_design_variable():
    documented = env_example()
    missing = [name for name in DESIGN_VARIABLES if name not in documented]
    assert not missing, f".env.example does not document {missing}"


def test_env_example_documents_every_variable_the_settings_read():
    read = set(re.findall(r"\benv(?:\.[a-z_]+)?\(\s*\"([A-Z][A-Z0-9_]*)\"", SETTINGS.read_text()))
    assert "DJANGO_SECRET_KEY" in read
    missing = sorted(read - set(env_example()))
    assert not missing, f"project/settings.py reads {missing}, which .env.example does not document"


def test_env_example_holds_only_placeholder_secrets():
    for name, (value, _active) in env_example().items():
        if SECRET_NAME.search(name):
            assert value == "" or value.startswith("change-me"), f"{name} must be a change-me placeholder"
        for password in URL_PASSWORD.findall(value):
            assert password.startswith("change-me"), f"{name} holds a password that is not a placeholder"


def test_env_example_values_are_usable_as_is():
    entries = env_example()
    assert entries["AMQP_QUEUE_TYPE"][0] in {"classic", "quorum"}
    assert entries["DJANGO_DEBUG"] == ("0", True)
    # the system check wants at least 32 characters outside debug
    assert len(entries["AGENT_SERVICE_TOKEN"][0]) >= 32
    assert "127.0.0.1" in entries["DJANGO_ALLOWED_HOSTS"][0].split(","), "the container health check needs it"
    for name, (value, active) in entries.items():
        if active:
            assert not (value[:1] in "\"'" and value), f"{name}: docker compose would keep the quotes"
            assert " #" not in value, f"{name}: docker compose would keep the comment in the value"


# ------------------------------------------------------------------ operations (issue 16)


def test_the_stack_schedules_its_housekeeping(services):
    housekeeping = services["housekeeping"]
    assert command_of(housekeeping) == ["python", "manage.py", "housekeeping"]
    assert str(housekeeping.get("restart")) in LONG_RUNNING_RESTART


def test_daemons_serve_metrics_inside_the_network_only(services):
    for name in ("relay", "consumer"):
        environment = environment_of(services[name])
        assert environment["METRICS_PORT"] == "9100" and environment["METRICS_ADDR"] == "0.0.0.0"  # noqa: S104
        published = [str(port) for port in services[name].get("ports") or []]
        assert not any("9100" in port for port in published), f"{name} publishes its metrics port"


def test_gunicorn_runs_with_the_multiprocess_metrics_configuration():
    cmd = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "CMD"][-1]
    assert "python:project.gunicorn_conf" in cmd
    conf = (REPO / "project" / "gunicorn_conf.py").read_text()
    assert "def child_exit" in conf and "mark_process_dead" in conf and "def post_fork" in conf
