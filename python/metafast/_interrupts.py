"""Ctrl-C held back while the core updates a learner, so that it never lands between the
update of the parameters and the record of that update."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Holds SIGINT back until the caller asks, and raises KeyboardInterrupt on leaving if one came.

    Yields
    ------
    callable
        ``interrupted() -> bool``: whether Ctrl-C was pressed since entering.

    Only the main thread can own signal handlers; elsewhere Ctrl-C is left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    received: list[bool] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: received.append(True))
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
