from django.apps import AppConfig


class IdentityConfig(AppConfig):
    name = "identity"
    verbose_name = "Identity"

    def ready(self) -> None:
        from identity import checks, schema  # noqa: F401 (registers the system checks and the schema extension)
