from django.core.management.base import BaseCommand

from consumers.runners import consumer_from_settings, stop_flag_on_signals
from project import metrics_http, tracing


class Command(BaseCommand):
    help = "Run the consumer daemon: deliver events to the Agent until SIGTERM/SIGINT."

    def handle(self, *args, **options) -> None:
        stop = stop_flag_on_signals()
        metrics_http.daemon_metrics_serve(process="consumer")
        tracing.otel_init(service_name="kairos-consumer")
        try:
            consumer_from_settings(stop=stop).run()
        finally:
            tracing.otel_shutdown()
