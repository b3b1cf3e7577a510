"""Settings for the test suite: production settings with debug on and a fast hasher."""
import os

os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("AGENT_SERVICE_TOKEN", "test-service-token-0123456789abcdef0123")

from project.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
SECURE_SSL_REDIRECT = False
BUS_IMMEDIATE_BACKOFF_MAX_SECONDS = 0.05
# Throttle keys of this test process only: a Redis database may be shared by several runs, and
# the fixtures clear this prefix (never the whole database). Subprocesses of a test inherit it.
THROTTLE_KEY_PREFIX = os.environ.get("THROTTLE_KEY_PREFIX") or f"kairos-test:{os.getpid()}-{os.urandom(4).hex()}:"
