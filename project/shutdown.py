"""A stop flag that SIGTERM and SIGINT set, for every long-running process (no Django here: the
Agent double uses it too).

A Python signal handler runs on the main thread between two bytecodes, wherever that thread is,
so it must take no lock. `threading.Event.set()` takes the event's lock, and the main thread of a
daemon spends its idle time inside that very event's `wait()`, which holds the lock while it wakes
up and returns: a signal landing there makes the thread wait for itself, forever, and the process
never stops (a consumer hung on SIGTERM in CI this way). So the handler only writes the signal's
number to a pipe, which takes no Python lock; a daemon thread reads it, announces it and sets the
event.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals(announce: Callable[[signal.Signals], object] | None = None) -> threading.Event:
    """An event that SIGTERM or SIGINT sets; `announce` is called (off the signal handler) first.

    Call it on the main thread (signal.signal requires it), once per process."""
    stop = threading.Event()
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def on_signal(signum: int, frame: object) -> None:
        with contextlib.suppress(BlockingIOError):  # a full pipe already holds a stop request
            os.write(write_fd, bytes([signum]))

    def set_stop() -> None:
        while data := os.read(read_fd, 64):
            for signum in data:
                if announce is not None:
                    announce(signal.Signals(signum))
            stop.set()

    threading.Thread(target=set_stop, name="stop-on-signal", daemon=True).start()
    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    return stop
