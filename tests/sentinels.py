"""Evidence that nobody connected to a listener, instead of a timed wait for a connection.

A test that must show its code under test made no connection (an external DTD not fetched, a
remote WSDL import not followed) used to accept with a timeout and count the timeout as proof:
it waited, and it passed whenever the connection came later than the wait.
"""

from __future__ import annotations

import socket


def nobody_connected(listener: socket.socket) -> bool:
    """Whether no connection reached ``listener`` before this call.

    Connects a sentinel and accepts once: the accept queue is first in, first out, so the
    connection accepted is the sentinel's only when nobody connected ahead of it.
    """
    with socket.create_connection(listener.getsockname()[:2], timeout=5) as sentinel:
        listener.settimeout(5)
        accepted, peer = listener.accept()
        accepted.close()
        return bool(peer == sentinel.getsockname())
