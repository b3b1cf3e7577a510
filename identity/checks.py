"""System checks for secrets that must never reach production.

`check_production_secrets` runs with every manage.py command outside debug (errors: the process
refuses to start): a secret that is a known placeholder (the `change-me-...` values of
.env.example, the development key, the image's build-step key) or obviously weak. Passwords in
the database, broker, cache and SMTP settings are refused when they are placeholders; being
merely weak ("guest", short) is a warning of `check --deploy`, since loopback development
servers legitimately use such passwords.
"""
from collections.abc import Iterator
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks

MIN_SERVICE_TOKEN_LENGTH = 32
MIN_SECRET_KEY_LENGTH = 50  # Django's own deploy check (security.W009) uses the same length
# A random 32+ character value has far more; "xxxx..." or "abab..." has fewer.
MIN_DISTINCT_CHARACTERS = 10
MIN_PASSWORD_LENGTH = 12

# Every placeholder of .env.example starts with "change-me" (tests/test_deploy_files.py holds
# it to that), so the marker catches them all, and any variant an operator makes of one.
PLACEHOLDER_MARKERS = ("change-me", "changeme", "change_me", "replace-me", "replaceme", "placeholder")
KNOWN_PLACEHOLDERS = frozenset(
    {
        "collectstatic-build-step-only",  # the Dockerfile's build-step key
        "django-insecure-dev-only-key-never-use-in-production",  # settings.DEV_SECRET_KEY
        "secret",
        "password",
        "test-service-token-0123456789abcdef0123",  # the test settings' token
    }
)
# Defaults of the images and tools we run with: acceptable on loopback, never in production.
COMMON_PASSWORDS = frozenset({"guest", "postgres", "password", "kairos", "admin", "root", "rabbitmq", "secret"})


def _is_placeholder(value: str) -> bool:
    lowered = value.lower()
    return lowered in KNOWN_PLACEHOLDERS or any(marker in lowered for marker in PLACEHOLDER_MARKERS)


def _key_weakness(value: str, *, min_length: int) -> str | None:
    """Why a generated secret (key, token) is not fit for production, or None."""
    if _is_placeholder(value) or value.startswith("django-insecure"):
        return "is a placeholder or development value"
    if len(value) < min_length:
        return f"is shorter than {min_length} characters"
    if len(set(value)) < MIN_DISTINCT_CHARACTERS:
        return f"has fewer than {MIN_DISTINCT_CHARACTERS} distinct characters"
    return None


def _url_password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


def _passwords() -> Iterator[tuple[str, str]]:
    """(setting, password) for every password the settings hold; empty ones are left out
    (peer or trust authentication on a local socket)."""
    for alias, database in settings.DATABASES.items():
        yield f"DATABASES[{alias!r}] (DATABASE_URL)", str(database.get("PASSWORD") or "")
    yield "AMQP_URL", _url_password(getattr(settings, "AMQP_URL", "") or "")
    for alias, cache in settings.CACHES.items():
        locations = cache.get("LOCATION") or []
        for location in [locations] if isinstance(locations, str) else locations:
            if "://" in str(location):
                yield f"CACHES[{alias!r}] LOCATION", _url_password(str(location))
        password = (cache.get("OPTIONS") or {}).get("password")
        if password:
            yield f"CACHES[{alias!r}] OPTIONS password", str(password)
    yield "EMAIL_HOST_PASSWORD", str(getattr(settings, "EMAIL_HOST_PASSWORD", "") or "")


@checks.register(checks.Tags.security)
def check_production_secrets(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    if settings.DEBUG:
        return []
    errors: list[checks.CheckMessage] = []
    if len(getattr(settings, "AGENT_SERVICE_TOKEN", "") or "") < MIN_SERVICE_TOKEN_LENGTH:
        errors.append(
            checks.Error(
                f"AGENT_SERVICE_TOKEN must be at least {MIN_SERVICE_TOKEN_LENGTH} characters outside debug.",
                hint="Set AGENT_SERVICE_TOKEN to a long random value shared with the Agent.",
                id="identity.E001",
            )
        )
    else:
        weakness = _key_weakness(settings.AGENT_SERVICE_TOKEN, min_length=MIN_SERVICE_TOKEN_LENGTH)
        if weakness:
            errors.append(
                checks.Error(
                    f"AGENT_SERVICE_TOKEN {weakness}.",
                    hint='A new random value: python -c "import secrets; print(secrets.token_urlsafe(48))"',
                    id="identity.E003",
                )
            )
    dev_key = getattr(settings, "DEV_SECRET_KEY", None)
    if dev_key and dev_key == settings.SECRET_KEY:
        errors.append(
            checks.Error(
                "DJANGO_SECRET_KEY is the development key outside debug.",
                hint="Set DJANGO_SECRET_KEY to a long random value.",
                id="identity.E002",
            )
        )
    else:
        keys = [("DJANGO_SECRET_KEY", settings.SECRET_KEY)] + [
            ("SECRET_KEY_FALLBACKS", key) for key in getattr(settings, "SECRET_KEY_FALLBACKS", [])
        ]
        for name, key in keys:
            weakness = _key_weakness(str(key), min_length=MIN_SECRET_KEY_LENGTH)
            if weakness:
                errors.append(
                    checks.Error(
                        f"{name} {weakness}.",
                        hint='A new random value: python -c "import secrets; print(secrets.token_urlsafe(50))"',
                        id="identity.E004",
                    )
                )
    for name, password in _passwords():
        if password and _is_placeholder(password):
            errors.append(
                checks.Error(
                    f"The password in {name} is a placeholder (the .env.example value?).",
                    hint="Replace every change-me value of .env with a long random one.",
                    id="identity.E005",
                )
            )
    return errors


@checks.register(checks.Tags.security, deploy=True)
def check_deploy_passwords(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """`check --deploy`: weak service passwords (placeholders are check_production_secrets' errors)."""
    if settings.DEBUG:
        return []
    warnings: list[checks.CheckMessage] = []
    for name, password in _passwords():
        if not password or _is_placeholder(password):
            continue
        if password.lower() in COMMON_PASSWORDS or len(password) < MIN_PASSWORD_LENGTH:
            warnings.append(
                checks.Warning(
                    f"The password in {name} is weak (a well-known default, or under {MIN_PASSWORD_LENGTH} "
                    "characters).",
                    hint="Use a long random password for every service in production.",
                    id="identity.W001",
                )
            )
    return warnings
