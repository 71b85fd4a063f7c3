"""A deadline for a whole SOAP answer, not only for each read of it.

requests (urllib3 under it) fails a read that waits longer than ``timeout`` for its next bytes.
An answer trickling in at one byte per second (a slow-loris peer, a stuck proxy) never trips
that: it held a pool thread, and the message, for as long as the peer kept dripping (the fault
test saw a worker wait 47 s with a 2 s timeout), and stopping the daemon waited for it too.

Connections of the target's session (``DeadlineAdapter``) note themselves, for the calling
thread, when they send a request. ``deadline`` arms a timer for the whole call; when it fires
with the call still running it shuts that connection's socket down, so the blocked read ends at
once, and the caller turns what requests raised into ``requests.Timeout`` (classified as
retryable, like any timeout). The socket is closed by its pool afterwards, not leaked.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["DeadlineAdapter", "deadline"]

_calls = threading.local()  # the calling thread's current call: a one-slot list or None


def _note(connection: HTTPConnection) -> None:
    slot: list[HTTPConnection | None] | None = getattr(_calls, "slot", None)
    if slot is not None:
        slot[0] = connection


class _Connection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _note(self)
        super().request(*args, **kwargs)


class _TlsConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _note(self)
        super().request(*args, **kwargs)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _TlsConnection


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections ``deadline`` can cut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[Callable[[], bool]]:
    """Cut the calling thread's connection if the block runs longer than ``seconds``; yields
    a function telling whether it did."""
    slot: list[HTTPConnection | None] = [None]
    expired = threading.Event()
    lock = threading.Lock()
    done = False

    def cut() -> None:
        with lock:
            if done:
                return
            expired.set()
            connection = slot[0]
            sock = getattr(connection, "sock", None) if connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    _calls.slot = slot
    timer.start()
    try:
        yield expired.is_set
    finally:
        with lock:
            done = True
        timer.cancel()
        _calls.slot = None
