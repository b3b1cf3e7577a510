"""The configuration a bare `gunicorn project.wsgi:application` reads from the repository root
(gunicorn's default config file): the same as the Dockerfile's `-c python:project.gunicorn_conf`,
so a server started by hand also logs no secret (project/gunicorn.py)."""
from project.gunicorn_conf import *  # noqa: F403
