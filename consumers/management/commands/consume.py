from django.core.management.base import BaseCommand

from consumers.runners import consumer_from_settings, stop_flag_on_signals


class Command(BaseCommand):
    help = "Run the consumer daemon: deliver events to the Agent until SIGTERM/SIGINT."

    def handle(self, *args, **options) -> None:
        consumer_from_settings(stop=stop_flag_on_signals()).run()
