"""System checks for settings that must never reach production (run by every manage.py command)."""
from django.conf import settings
from django.core import checks

MIN_SERVICE_TOKEN_LENGTH = 32


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
    dev_key = getattr(settings, "DEV_SECRET_KEY", None)
    if dev_key and dev_key == settings.SECRET_KEY:
        errors.append(
            checks.Error(
                "DJANGO_SECRET_KEY is the development key outside debug.",
                hint="Set DJANGO_SECRET_KEY to a long random value.",
                id="identity.E002",
            )
        )
    return errors
