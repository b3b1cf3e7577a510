from django.apps import AppConfig


class AllergiesConfig(AppConfig):
    name = "allergies"
    verbose_name = "Allergies"
