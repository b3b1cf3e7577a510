from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from consumers.runners import Relay, stop_flag_on_signals
from project import metrics_http


class Command(BaseCommand):
    help = "Publish the outbox to RabbitMQ with publisher confirms (AMQP mode only)."

    def handle(self, *args, **options) -> None:
        if not settings.AMQP_URL:
            raise CommandError("AMQP_URL is not set: the embedded bus needs no relay (the consumer reads the outbox).")
        stop = stop_flag_on_signals()
        metrics_http.daemon_metrics_serve(process="relay")
        Relay(stop=stop).run()
