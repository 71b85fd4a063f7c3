"""One pika SelectConnection on its own thread, reconnecting with capped backoff.

pika connections are not thread-safe, so each connection lives on exactly one thread and other
threads reach it through ``call_soon`` (``add_callback_threadsafe``). Before every (re)connect the
``prepare`` hook runs (topology declaration), so a reconnect restores everything. Publishing and
consuming use separate instances: a resource alarm blocks publishers, never consumers.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
import structlog
from pika.adapters.select_connection import SelectConnection
from pika.channel import Channel

from middleware import metrics
from middleware.config.models import BrokerConfig
from middleware.errors import BrokerUnavailable, TopologyConflict

__all__ = ["ConnectionThread", "connection_parameters"]

log = structlog.get_logger(__name__)


def connection_parameters(broker: BrokerConfig, name: str) -> pika.URLParameters:
    """pika parameters from the config: heartbeat, blocked timeout, TLS, a readable name."""
    params = pika.URLParameters(broker.url)
    params.heartbeat = broker.heartbeat
    params.blocked_connection_timeout = broker.blocked_timeout
    params.connection_attempts = 1
    params.socket_timeout = 5
    params.client_properties = {"connection_name": f"silobridge-{name}"}
    if broker.url.startswith("amqps://"):
        context = ssl.create_default_context(cafile=broker.tls.ca_file)
        if broker.tls.cert_file:
            context.load_cert_chain(broker.tls.cert_file, broker.tls.key_file)
        params.ssl_options = pika.SSLOptions(
            context, broker.tls.server_hostname or params.host
        )
    return params


class ConnectionThread(threading.Thread):
    """Keeps one channel open on one connection and tells its owner when it opens or is lost."""

    def __init__(
        self,
        name: str,
        broker: BrokerConfig,
        on_channel: Callable[[Channel], None],
        on_lost: Callable[[], None],
        prepare: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name=f"amqp-{name}", daemon=True)
        self.label = name
        self._broker = broker
        self._on_channel = on_channel
        self._on_lost = on_lost
        self._prepare = prepare
        self._stopping = threading.Event()
        self._connection: SelectConnection | None = None
        self._opened_once = False
        self.fatal: Exception | None = None
        self.ready = threading.Event()

    # -- called from any thread -------------------------------------------------------------

    def call_soon(self, fn: Callable[[], Any]) -> bool:
        """Run fn on the connection's thread; False when there is no live connection."""
        connection = self._connection
        if connection is None or not connection.is_open:
            return False
        try:
            connection.ioloop.add_callback_threadsafe(fn)
        except Exception:  # the loop closed between the check and the call
            return False
        return True

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self.call_soon(self._close)
        self.join(timeout)

    # -- the connection's own thread ----------------------------------------------------------

    def run(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            try:
                if self._prepare is not None:
                    self._prepare()
                self._connection = SelectConnection(
                    connection_parameters(self._broker, self.label),
                    on_open_callback=self._opened,
                    on_open_error_callback=self._open_failed,
                    on_close_callback=self._closed,
                )
                self._connection.ioloop.start()
            except TopologyConflict as exc:
                self.fatal = exc
                log.error("topology conflict", connection=self.label, error=str(exc))
                self.ready.set()
                return
            except (BrokerUnavailable, pika.exceptions.AMQPError, OSError) as exc:
                log.warning("broker unreachable", connection=self.label, error=str(exc))
            self._connection = None
            if self.ready.is_set():
                delay = 0.5
            self.ready.clear()
            metrics.BROKER_CONNECTED.labels(self.label).set(0)
            self._stopping.wait(delay)
            delay = min(delay * 2, self._broker.reconnect_max_delay)

    def _opened(self, connection: pika.BaseConnection) -> None:
        connection.add_on_connection_blocked_callback(
            lambda _c, _f: log.warning("broker blocked this connection", connection=self.label)
        )
        connection.channel(on_open_callback=self._channel_opened)

    def _channel_opened(self, channel: Channel) -> None:
        channel.add_on_close_callback(self._channel_closed)
        if self._opened_once:
            metrics.RECONNECTS.labels(self.label).inc()
            log.info("broker reconnected", connection=self.label)
        self._opened_once = True
        self._on_channel(channel)
        metrics.BROKER_CONNECTED.labels(self.label).set(1)
        self.ready.set()

    def _channel_closed(self, _channel: Channel, reason: Exception) -> None:
        if not self._stopping.is_set():
            log.warning("channel closed", connection=self.label, reason=str(reason))
        self.ready.clear()
        metrics.BROKER_CONNECTED.labels(self.label).set(0)
        self._on_lost()
        self._close()

    def _open_failed(self, connection: pika.BaseConnection, exc: BaseException) -> None:
        log.warning("broker connection failed", connection=self.label, error=str(exc))
        connection.ioloop.stop()

    def _closed(self, connection: pika.BaseConnection, reason: Exception) -> None:
        if self.ready.is_set():
            self.ready.clear()
            self._on_lost()
        if not self._stopping.is_set():
            log.warning("broker connection lost", connection=self.label, reason=str(reason))
        connection.ioloop.stop()

    def _close(self) -> None:
        connection = self._connection
        if connection is not None and not (connection.is_closing or connection.is_closed):
            connection.close()
