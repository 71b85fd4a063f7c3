"""Broker connections on one shared asyncio loop thread, each reconnecting with capped backoff.

pika connections are not thread-safe, so every connection of a process lives on one loop
thread (``BrokerLoop``) and other threads reach it through ``call_soon``. Publishing and
consuming still use separate connections, as a resource alarm blocks publishers only, but
sharing the thread means a consumed message is mapped, published and acked without a single
thread switch. Before every (re)connect the ``prepare`` hook runs on a helper thread (topology
declaration is blocking I/O), so a reconnect restores everything.

The loop is an asyncio loop (pika's ``AsyncioConnection``), not pika's own ``IOLoop``, so that
an asyncio client can run on the same thread: a REST target does (``Broker.event_loop``), and
its requests then start and finish without a thread hand-over per message (each one woke the
other thread and traded the GIL; ``bench/RESULTS.md``, Sync lag). pika's loop let an exception
that escaped a callback end the thread, which the watchdog turns into a process exit; asyncio
would log it and go on with a connection in an unknown state, so ``BrokerLoop`` keeps pika's
rule: such an exception stops the loop and ends the thread with it.

Liveness is read, not assumed: a heartbeat timer on the loop stamps the time every second, so
``BrokerLoop.turning`` is false once the thread died or stalled, and a connection counts as
usable (readiness, ``silobridge_broker_connected``) only while its loop turns. Every callback
runs guarded (``middleware.broker.guard``): an exception costs one message, never the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pika.exceptions
import structlog
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.adapters.utils.connection_workflow import AMQPConnectorException
from pika.channel import Channel

from middleware import metrics
from middleware.broker.guard import guarded, report
from middleware.config.models import BrokerConfig
from middleware.errors import BrokerUnavailable, TopologyConflict

__all__ = ["CONNECT_ERRORS", "BrokerLoop", "ManagedConnection", "connection_parameters",
           "node_parameters"]

log = structlog.get_logger(__name__)

CONNECT_ERRORS = (pika.exceptions.AMQPError, AMQPConnectorException, OSError)
"""What opening a blocking connection raises when the broker is unreachable or silent: a
handshake timeout (a listener that never answers) is an AMQPConnectorException, not an
AMQPError, and escaped every handler that caught only the latter."""

_BEAT_EVERY = 1.0
STALE_AFTER = 5.0  # seconds without a heartbeat after which the loop counts as stalled


def connection_parameters(broker: BrokerConfig, name: str, node: int = 0) -> pika.URLParameters:
    """pika parameters from the config: heartbeat, blocked timeout, TLS, a readable name.

    ``node`` picks one of the cluster's URLs (modulo their number), so a caller that counts up
    after each failure walks round the nodes. ``connect_timeout`` bounds the whole handshake
    (TCP, TLS, AMQP), so a broker that accepts a connection and never answers fails in time.

    For ``amqps://`` the broker's certificate must chain to ``tls.ca_file`` (without it, to
    the system CAs) and name the host of the URL, or ``tls.server_hostname`` when that differs
    (a broker reached by IP, or through a tunnel). The TLS context is built once per set of
    files, so a reconnect on the broker I/O loop reads no file; the price is that renewed
    files are read at the next process start.
    """
    urls = broker.urls
    url = urls[node % len(urls)]
    params = pika.URLParameters(url)
    params.heartbeat = broker.heartbeat
    params.blocked_connection_timeout = broker.blocked_timeout
    params.connection_attempts = 1
    params.socket_timeout = broker.connect_timeout
    params.stack_timeout = broker.connect_timeout
    params.client_properties = {"connection_name": f"silobridge-{name}"}
    if url.startswith("amqps://"):
        tls = broker.tls
        context = _tls_context(tls.ca_file, tls.cert_file, tls.key_file)
        params.ssl_options = pika.SSLOptions(context, tls.server_hostname or params.host)
    return params


def node_parameters(broker: BrokerConfig, name: str) -> list[pika.URLParameters]:
    """Parameters for every node, for a blocking connection that tries them in turn."""
    return [connection_parameters(broker, name, node) for node in range(len(broker.urls))]


@functools.lru_cache(maxsize=8)
def _tls_context(
    ca_file: str | None, cert_file: str | None, key_file: str | None
) -> ssl.SSLContext:
    """A client context that verifies the broker: certificate chain, host name, TLS >= 1.2.

    Unreadable or invalid files are reported as OSError naming the setting and the file:
    every caller already treats OSError as "broker unreachable" (the daemon logs it, stays
    not ready and retries, as a mounted secret may still appear; the CLI prints it).
    """
    if ca_file:  # this CA only, not the system's too: a public CA must not vouch for our broker
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        with _reading(f"broker.tls.ca_file {ca_file}",
                      "the PEM file of the CA that signed the broker's certificate"):
            context.load_verify_locations(cafile=ca_file)
    else:
        context = ssl.create_default_context()
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        files = f"broker.tls.cert_file {cert_file}" + (
            f" with key_file {key_file}" if key_file else " (key included)")
        with _reading(files, "a PEM client certificate and its private key, unencrypted"):
            # a password callback, or OpenSSL would prompt on the terminal for an encrypted key
            context.load_cert_chain(cert_file, key_file, password=_no_password)
    return context


def _no_password() -> bytes:
    raise OSError("the private key is encrypted")


@contextlib.contextmanager
def _reading(what: str, expected: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:  # FileNotFoundError, PermissionError, ssl.SSLError (bad PEM)
        reason = exc.strerror or getattr(exc, "reason", None) or str(exc)
        raise OSError(f"{what}: {reason}; it must be {expected}") from exc


class BrokerLoop:
    """One thread running one asyncio loop, shared by all connections of the process."""

    def __init__(self) -> None:
        self.ioloop = asyncio.new_event_loop()
        self.ioloop.set_exception_handler(self._escaped)
        self._escaped_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="amqp-loop", daemon=True)
        self._users = 0
        self._lock = threading.Lock()
        self._beat = 0.0  # time.monotonic() of the last heartbeat run on the loop

    def acquire(self) -> None:
        """A connection starts using the loop; the first one starts the thread."""
        with self._lock:
            if self._thread.ident is not None and not self._thread.is_alive():
                raise RuntimeError("this broker loop has stopped; create a new one")
            self._users += 1
            if self._thread.ident is None:
                self._thread.start()
                self.ioloop.call_soon_threadsafe(self._heartbeat)

    def release(self) -> None:
        """A connection stopped; the last one stops the thread."""
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last and self._thread.is_alive():
            self.ioloop.call_soon_threadsafe(self.ioloop.stop)
            if not self.in_loop():
                self._thread.join(10)
                self.ioloop.close()

    def in_loop(self) -> bool:
        return threading.get_ident() == self._thread.ident

    def _run(self) -> None:
        self.ioloop.run_forever()
        if self._escaped_error is not None:  # the thread dies of it: the watchdog reads why
            raise self._escaped_error

    def _escaped(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """An exception past every guard, straight out of a callback (pika's own, or one of the
        REST targets' aiohttp callbacks, which run here too): the state of the connections is
        unknown, so the loop stops and its thread ends with it.
        Anything else asyncio reports (a task's exception nobody read, a transport's error,
        already handed to its protocol) is logged as asyncio would."""
        error = context.get("exception")
        if "handle" in context and error is not None:
            self._escaped_error = error
            loop.stop()
            return
        loop.default_exception_handler(context)

    @property
    def thread(self) -> threading.Thread:
        """The loop's thread, for the watchdog to observe."""
        return self._thread

    def turning(self, within: float = STALE_AFTER) -> bool:
        """Whether the thread is alive and ran its heartbeat within the last ``within`` seconds.

        A thread that is alive but stuck (a blocking call in a callback) is not turning either:
        nothing it owns is served meanwhile.
        """
        return self._thread.is_alive() and time.monotonic() - self._beat < within

    def _heartbeat(self) -> None:
        self._beat = time.monotonic()
        self.ioloop.call_later(_BEAT_EVERY, self._heartbeat)

    def call_soon(self, fn: Callable[[], Any]) -> bool:
        """Schedule fn on the loop thread from any thread; False when the loop is not running.

        On the loop thread itself it is queued without waking the poller. An
        exception fn raises is reported and contained (``guarded``).
        """
        fn = guarded("scheduled", fn)
        if self.in_loop():
            self.ioloop.call_soon(fn)
            return True
        if not self._thread.is_alive():
            return False
        try:
            self.ioloop.call_soon_threadsafe(fn)
        except RuntimeError:  # closed between the check and the call: as if not running
            return False
        return True

    def call_later(self, delay: float, fn: Callable[[], Any]) -> None:
        """Schedule fn (guarded, like ``call_soon``); only from the loop thread."""
        self.ioloop.call_later(delay, guarded("scheduled", fn))


class ManagedConnection:
    """Keeps one channel open on one connection and tells its owner when it opens or is lost."""

    def __init__(
        self,
        loop: BrokerLoop,
        name: str,
        broker: BrokerConfig,
        on_channel: Callable[[Channel], None],
        on_lost: Callable[[], None],
        prepare: Callable[[], None] | None = None,
    ) -> None:
        self.loop = loop
        self.label = name
        self._broker = broker
        self._on_channel = on_channel
        self._on_lost = on_lost
        self._prepare = prepare
        self._stopping = False
        self._connection: AsyncioConnection | None = None
        self._opened_once = False
        self._delay = 0.5
        self._node = 0  # which of the cluster's URLs the next attempt uses
        self._gone: threading.Event | None = None  # set when the socket closed, for stop()
        self._channel: Channel | None = None  # the channel last opened
        self._renewing: Channel | None = None  # a channel closed by renew_channel
        self.fatal: Exception | None = None
        self.ready = threading.Event()
        metrics.RECONNECTS.labels(name)  # exported at 0 from the start, so increase() works
        # read at each scrape, so a dead loop cannot leave it at 1
        metrics.BROKER_CONNECTED.labels(name).set_function(lambda: float(self.usable))

    @property
    def usable(self) -> bool:
        """The channel is open and the loop serving it turns (not a flag a dead thread left)."""
        return self.ready.is_set() and self.loop.turning()

    def start(self) -> None:
        self.loop.acquire()
        self._attempt()

    def stop(self) -> None:
        """Close the connection and wait until its socket is closed (at most ~6 s).

        Waiting for the close callback, not for the close frame to be written: the last user
        of the loop stops it next, and a socket whose Close-Ok had not arrived by then stayed
        open for the life of the process (one leaked connection per stopped publisher). A
        broker that does not answer the close in 5 s gets its socket dropped.
        """
        self._stopping = True
        gone = threading.Event()

        def close() -> None:
            connection = self._connection
            if connection is None or connection.is_closed:
                gone.set()
                return
            self._gone = gone
            if not connection.is_closing:
                connection.close()

        def drop() -> None:
            connection = self._connection
            if connection is not None and not connection.is_closed:
                connection._terminate_stream(pika.exceptions.StreamLostError(
                    "the broker did not answer the close"))  # no handshake: the socket goes

        if self.loop.call_soon(close) and not self.loop.in_loop() and not gone.wait(5):
            self.loop.call_soon(drop)
            gone.wait(1)
        self.loop.release()

    # -- connecting ---------------------------------------------------------------------------

    def _attempt(self) -> None:
        """Run ``prepare`` off the loop (it blocks), then connect on the loop."""
        if self._prepare is None:
            self.loop.call_soon(self._connect)
            return
        threading.Thread(target=self._prepare_then_connect, name=f"prepare-{self.label}",
                         daemon=True).start()

    def _prepare_then_connect(self) -> None:
        assert self._prepare is not None
        try:
            self._prepare()
        except TopologyConflict as exc:
            self.fatal = exc
            log.error("topology conflict", connection=self.label, error=str(exc))
            return
        except (BrokerUnavailable, *CONNECT_ERRORS) as exc:
            log.warning("broker unreachable", connection=self.label, error=str(exc))
            self.loop.call_soon(self._retry_later)
            return
        self.loop.call_soon(self._connect)

    def _connect(self) -> None:
        if self._stopping:
            return
        try:
            self._connection = AsyncioConnection(
                connection_parameters(self._broker, self.label, self._node),
                on_open_callback=guarded("connection", self._opened),
                on_open_error_callback=guarded("connection", self._open_failed),
                on_close_callback=guarded("connection", self._closed),
                custom_ioloop=self.loop.ioloop,
            )
        except Exception as exc:  # unreachable, bad TLS files...: keep trying, as configured
            log.warning("broker unreachable", connection=self.label, error=str(exc))
            self._retry_later()

    def _retry_later(self) -> None:
        """Try again after a capped exponential backoff, on the next node of a cluster.

        The delay is drawn between half and all of the backoff ("equal jitter"), so replicas
        that lost the broker together do not all come back in the same instant.
        """
        if self._stopping:
            return
        self._node += 1
        backoff = self._delay
        self._delay = min(self._delay * 2, self._broker.reconnect_max_delay)
        self.loop.call_later(random.uniform(backoff / 2, backoff), self._attempt)

    def renew_channel(self) -> None:
        """Replace the open channel with a fresh one on the same connection (loop thread).

        For state the broker keeps per channel that went bad (``Publisher`` after a nack). The
        owner sees a loss (``on_lost``: publishes awaiting a confirm fail), then a new channel.
        """
        channel = self._channel
        if self._stopping or channel is None or not channel.is_open:
            return
        self._renewing = channel
        channel.close()

    # -- callbacks on the loop ------------------------------------------------------------------

    def _opened(self, connection: pika.BaseConnection) -> None:
        if self._broker.heartbeat:
            self._watch_silence(connection, connection.bytes_received, time.monotonic())
        connection.add_on_connection_blocked_callback(guarded(
            "connection",
            lambda _c, _f: log.warning("broker blocked this connection", connection=self.label),
        ))
        connection.channel(on_open_callback=guarded("channel", self._channel_opened))

    def _watch_silence(self, connection: AsyncioConnection, seen: int, since: float) -> None:
        """Drop a connection on which nothing arrived for 1.5 heartbeats.

        pika's own check runs every heartbeat + 5 s and needs two checks, so a partition that
        swallows packets without a FIN or an RST went unnoticed for up to 2 x (heartbeat + 5) s;
        the broker sends a heartbeat every half interval, so 1.5 intervals of silence means
        three were lost. Checked every quarter interval: detected within 1.75 heartbeats.
        """
        replaced = connection is not self._connection  # a statement of its own: no narrowing
        if replaced or connection.is_closing or connection.is_closed:
            return
        now = time.monotonic()
        if connection.bytes_received != seen:
            seen, since = connection.bytes_received, now
        elif now - since > 1.5 * self._broker.heartbeat:
            log.warning("broker silent, dropping the connection", connection=self.label,
                        silent_seconds=round(now - since, 1))
            # what pika's own heartbeat check does: close the socket without a handshake
            connection._terminate_stream(pika.exceptions.AMQPHeartbeatTimeout(
                f"nothing received from the broker for {now - since:.1f} s"))
            return
        self.loop.call_later(self._broker.heartbeat / 4,
                             lambda: self._watch_silence(connection, seen, since))

    def _channel_opened(self, channel: Channel, renewed: bool = False) -> None:
        channel.add_on_close_callback(guarded("channel", self._channel_closed))
        self._channel = channel
        if renewed:
            log.info("channel renewed", connection=self.label)
        elif self._opened_once:
            metrics.RECONNECTS.labels(self.label).inc()
            log.info("broker reconnected", connection=self.label)
        self._opened_once = True
        try:
            self._on_channel(channel)
        except Exception as exc:  # a half-set-up channel is useless: close it and reconnect
            report("channel", exc, connection=self.label)
            channel.close()
            return
        self._delay = 0.5  # only a usable channel resets the backoff
        self.ready.set()

    def _channel_renewed(self, channel: Channel) -> None:
        self._channel_opened(channel, renewed=True)

    def _channel_closed(self, channel: Channel, reason: Exception) -> None:
        renewing = channel is self._renewing
        if renewing:
            self._renewing = None
        elif not self._stopping:
            log.warning("channel closed", connection=self.label, reason=str(reason))
        self._lost()
        connection = self._connection
        if connection is None or connection.is_closing or connection.is_closed:
            return
        if renewing and not self._stopping:
            connection.channel(on_open_callback=guarded("channel", self._channel_renewed))
            return
        connection.close()

    def _open_failed(self, _connection: pika.BaseConnection, exc: BaseException) -> None:
        log.warning("broker connection failed", connection=self.label, error=str(exc))
        self._connection = None
        if self._gone is not None:
            self._gone.set()
        self._retry_later()

    def _closed(self, _connection: pika.BaseConnection, reason: Exception) -> None:
        self._lost()
        self._connection = None
        if self._gone is not None:
            self._gone.set()
        if not self._stopping:
            log.warning("broker connection lost", connection=self.label, reason=str(reason))
            self._retry_later()

    def _lost(self) -> None:
        if self.ready.is_set():
            self.ready.clear()
            self._on_lost()
