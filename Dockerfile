# syntax=docker/dockerfile:1
# The Kairos backend image. Default command: the API under gunicorn on 0.0.0.0:8000.
# The same image runs the other processes with another command (see docker-compose.yml):
#   python manage.py migrate --noinput | relay | consume | replay_dead_letters | bus_status
#
# Configuration comes only from the environment (see .env.example); nothing secret is
# baked in. Gunicorn workers: WEB_CONCURRENCY (default 2 here; gunicorn reads it itself);
# any other gunicorn flag can be added at run time with GUNICORN_CMD_ARGS.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    WEB_CONCURRENCY=2

# An unprivileged user for every process of the image (numeric ids, so that runtimes that
# insist on a non-root user can check them). Its home holds gunicorn's control socket.
RUN groupadd --system --gid 10001 kairos \
 && useradd --system --uid 10001 --gid kairos --create-home --home-dir /home/kairos \
      --shell /usr/sbin/nologin kairos

WORKDIR /app

# Pinned dependencies first: this layer is rebuilt only when requirements.txt changes.
# (Every package has a manylinux wheel: no compiler needed.)
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# The code stays owned by root: the app user can read it, not change it.
COPY . .

# Static files (admin, Swagger UI) are collected at build time into /app/staticfiles.
# The settings refuse to load without a secret key when DEBUG is off: this placeholder
# lives only in this build step; the running container gets the real one from its env.
RUN DJANGO_SECRET_KEY=collectstatic-build-step-only python manage.py collectstatic --noinput --verbosity 0

USER 10001:10001

EXPOSE 8000

# project/gunicorn_conf.py: Prometheus multiprocess mode (child_exit cleanup) and OpenTelemetry
# started after the fork (post_fork).
CMD ["gunicorn", "--config", "python:project.gunicorn_conf", "project.wsgi:application", \
     "--bind", "0.0.0.0:8000", \
     "--worker-tmp-dir", "/dev/shm", \
     "--access-logfile", "-", \
     "--error-logfile", "-", \
     "--timeout", "30", \
     "--graceful-timeout", "30"]
