from django.conf import settings
from django.core.management.base import BaseCommand

from consumers.runners import EmbeddedConsumer, RabbitConsumer, stop_flag_on_signals
from project import metrics_http, tracing


class Command(BaseCommand):
    help = "Run the consumer daemon: deliver events to the Agent until SIGTERM/SIGINT."

    def handle(self, *args, **options) -> None:
        stop = stop_flag_on_signals()
        metrics_http.daemon_metrics_serve(process="consumer")
        tracing.otel_init(service_name="kairos-consumer")
        consumer = RabbitConsumer(stop=stop) if settings.AMQP_URL else EmbeddedConsumer(stop=stop)
        try:
            consumer.run()
        finally:
            tracing.otel_shutdown()
