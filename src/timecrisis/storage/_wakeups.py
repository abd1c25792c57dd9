"""In-process wake-ups: the push half of "claim at once when work arrives".

Each listener is bound to the event loop it subscribed from. A store calls `notify()` from
whatever thread did the write; every callback is then scheduled on its own loop with
`call_soon_threadsafe`, so a listener never runs on a foreign thread and the writer never
waits for it. Wake-ups are hints: a listener must still poll, so a wake-up that cannot be
delivered (its loop is closed) is dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable

from timecrisis.storage.base import WakeupCallback


class WakeupHub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[int, tuple[asyncio.AbstractEventLoop, WakeupCallback]] = {}
        self._ids = itertools.count()

    def subscribe(self, callback: WakeupCallback) -> Callable[[], None]:
        """Register `callback` on the running loop (RuntimeError outside one); returns an
        idempotent unsubscribe function."""
        loop = asyncio.get_running_loop()
        with self._lock:
            listener_id = next(self._ids)
            self._listeners[listener_id] = (loop, callback)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.pop(listener_id, None)

        return unsubscribe

    def notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners.values())
        for loop, callback in listeners:
            try:
                loop.call_soon_threadsafe(callback)
            except RuntimeError:  # the subscriber's loop is closed; it can no longer care
                continue

    def clear(self) -> None:
        with self._lock:
            self._listeners.clear()
