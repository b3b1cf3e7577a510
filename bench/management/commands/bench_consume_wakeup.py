"""Bench-only what-if: `manage.py consume` with the RabbitMQ consumer's wait-for-handler loop fixed.

consumers.runners.RabbitConsumer._run_on_worker waits for the handler thread with
`connection.sleep(0.05)` in a loop, so every event costs at least one 50 ms tick. This
subclass wakes the connection's loop from the handler thread as soon as the handler is done
(`add_callback_threadsafe`), which is the fix proposed in docs/benchmarks.md. It exists only so
the benchmark can show what the fix is worth; the service's own code is untouched.
"""
import inspect

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from consumers.runners import RabbitConsumer, stop_flag_on_signals


def _noop() -> None:
    return None


class WakeupRabbitConsumer(RabbitConsumer):
    def _run_on_worker(self, connection, fn, *args, **kwargs):
        if connection is None:  # before the broker connection exists: nothing to keep alive
            return super()._run_on_worker(connection, fn, *args, **kwargs)
        future = self.worker.submit(self._in_worker, fn, *args, **kwargs)
        future.add_done_callback(lambda _future: connection.add_callback_threadsafe(_noop))
        while not future.done():
            connection.process_data_events(time_limit=1.0)
        return future.result()


def applicable() -> bool:
    """True while the service's consumer still has the 50 ms polling wait this what-if replaces."""
    method = getattr(RabbitConsumer, "_run_on_worker", None)
    return method is not None and "connection.sleep(" in inspect.getsource(method)


class Command(BaseCommand):
    help = "Bench only: the RabbitMQ consumer with the proposed wake-up fix."

    def handle(self, *args, **options) -> None:
        if not settings.AMQP_URL:
            raise CommandError("the what-if is for the RabbitMQ consumer: set AMQP_URL")
        WakeupRabbitConsumer(stop=stop_flag_on_signals()).run()
