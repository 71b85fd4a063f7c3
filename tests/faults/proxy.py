"""A TCP fault proxy of the project's own: faults between silobridge and a broker or a target.

Placed between a client and its server (``FaultProxy(port_of_server)``; the client connects to
``proxy.port``), it forwards bytes both ways on an asyncio loop in a thread of its own, and a
test switches faults on and off while traffic flows. The vocabulary follows Toxiproxy's:

- ``blackhole()``: stop forwarding both ways on every connection, open ones and new ones,
  without a FIN or an RST: a silent partition. Bytes wait in the kernel buffers and flow again
  after ``heal()``, as after a partition that TCP retransmissions outlived.
- ``latency(seconds)``: every chunk is delivered that much later, in both directions; chunks
  stay pipelined, so latency does not by itself cap throughput.
- ``bandwidth(bytes_per_second)``: a cap per connection and direction.
- ``cut_after(n, direction, how)``: each connection open now passes ``n`` more bytes in that
  direction, then is reset (``"reset"``: RST to both peers), closed (``"close"``: FIN) or
  stalled (``"stall"``: nothing more forwarded either way, nothing closed). ``n`` that ends
  inside an AMQP frame or an HTTP body cuts it in the middle.
- ``refuse()``: the listening socket closes, so new connections are refused by the kernel;
  ``heal()`` listens again on the same port. Open connections are not touched.
- ``reset_all()``: every open connection is reset now.

``heal()`` clears every fault. Counters (``accepted``, ``open``, ``cuts``) let a test check
what the fault did, so a fault that silently did nothing fails the test instead of passing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Direction", "FaultProxy", "How"]

Direction = Literal["upstream", "downstream"]  # client -> server, server -> client
How = Literal["reset", "close", "stall"]
_CHUNK = 65536


@dataclass
class _Cut:
    left: int
    how: How


@dataclass(eq=False)  # identity: links live in a set
class _Link:
    """One proxied connection: the two sockets' streams and the cuts armed on it."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    cuts: dict[str, _Cut] = field(default_factory=dict)
    stalled: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self, how: How) -> None:
        for writer in (self.client, self.server):
            sock = writer.get_extra_info("socket")
            if how == "reset" and sock is not None:  # linger 0: close sends an RST
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if how == "reset":
                writer.transport.abort()
            else:
                writer.close()
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    """A switchable TCP proxy on 127.0.0.1 (port 0 until started) to ``host:port``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self._target = (upstream_host, upstream_port)
        self.port = 0
        self.accepted = 0
        self.cuts = 0
        self._links: set[_Link] = set()
        # a cut armed for connections not open yet (a client reconnecting right then), until
        # one fires: otherwise a cut armed in that gap never happens
        self._armed: dict[Direction, tuple[int, How]] = {}
        self._latency = 0.0
        self._rate: float | None = None
        self._refusing = False
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()  # set: not black-holed
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy",
                                        daemon=True)

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._begin())
        return self

    def stop(self) -> None:
        self._call(self._end())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def open(self) -> int:
        """Connections open through the proxy now."""
        return len(self._links)

    def url(self, template: str) -> str:
        """``template`` with ``{port}`` replaced: ``proxy.url("amqp://g:g@127.0.0.1:{port}/")``."""
        return template.format(port=self.port)

    # -- faults, from any thread ----------------------------------------------------------------

    def blackhole(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def latency(self, seconds: float) -> None:
        self._latency = seconds

    def bandwidth(self, bytes_per_second: float | None) -> None:
        self._rate = bytes_per_second

    def cut_after(self, nbytes: int, direction: Direction = "downstream",
                  how: How = "reset") -> int:
        """Arm a cut on every open connection, and on any opened before one fires; returns how
        many open connections were armed."""
        async def arm() -> int:
            self._armed[direction] = (nbytes, how)
            for link in self._links:
                link.cuts[direction] = _Cut(nbytes, how)
            return len(self._links)

        return self._call(arm())

    def reset_all(self) -> int:
        """Reset every open connection now; returns how many were reset."""
        async def reset() -> int:
            links = list(self._links)
            for link in links:
                self._drop(link, "reset")
            return len(links)

        return self._call(reset())

    def refuse(self) -> None:
        self._refusing = True
        self._call(self._close_listener())

    def heal(self) -> None:
        """Clear every fault: forward again, no latency or cap, listen again."""
        self._latency, self._rate = 0.0, None

        async def heal() -> None:
            self._armed.clear()
            for link in self._links:
                link.cuts.clear()
            self._flowing.set()
            if self._refusing:
                self._refusing = False
                await self._listen()

        self._call(heal())

    # -- the proxy's loop -----------------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _begin(self) -> None:
        self._flowing.set()
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()  # not wait_closed(): it would wait for the open connections
            self._server = None

    async def _end(self) -> None:
        await self._close_listener()
        for link in list(self._links):
            self._drop(link, "reset")
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # none is left pending at stop

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        for direction, (nbytes, how) in self._armed.items():
            link.cuts[direction] = _Cut(nbytes, how)
        self._links.add(link)
        link.tasks = [asyncio.create_task(self._pump(link, reader, up_writer, "upstream")),
                      asyncio.create_task(self._pump(link, up_reader, writer, "downstream"))]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._drop(link, "close")

    async def _pump(self, link: _Link, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, direction: Direction) -> None:
        """Read, hold back (partition, stall, latency, bandwidth), write; cut when armed."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.create_task(self._send(link, queue, writer))
        try:
            while True:
                await self._flowing.wait()
                rate = self._rate
                data = await reader.read(_CHUNK if rate is None else max(1, int(rate / 20)))
                await self._flowing.wait()  # a partition that began during the read holds it
                if not data:
                    await queue.join()
                    with contextlib.suppress(OSError, RuntimeError):
                        writer.write_eof()
                    return
                cut = link.cuts.get(direction)
                if cut is not None and len(data) >= cut.left:
                    data = data[:cut.left]
                    await queue.put((time.monotonic() + self._latency, data))
                    await queue.join()
                    self.cuts += 1
                    self._armed.pop(direction, None)
                    if cut.how == "stall":
                        link.stalled = True
                        await asyncio.Event().wait()  # until the connection is dropped
                    self._drop(link, cut.how)
                    return
                if cut is not None:
                    cut.left -= len(data)
                await queue.put((time.monotonic() + self._latency, data))
        finally:
            sender.cancel()

    async def _send(self, link: _Link, queue: asyncio.Queue[tuple[float, bytes]],
                    writer: asyncio.StreamWriter) -> None:
        while True:
            due, data = await queue.get()
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            while data:  # a cap switched on mid-chunk applies to the rest of the chunk
                await self._flowing.wait()
                rate = self._rate
                piece = data if rate is None else data[:max(1, int(rate / 20))]
                data = data[len(piece):]
                if link.stalled:
                    continue
                writer.write(piece)
                with contextlib.suppress(OSError):
                    await writer.drain()
                if rate is not None:
                    await asyncio.sleep(len(piece) / rate)
            queue.task_done()

    def _drop(self, link: _Link, how: How) -> None:
        if link in self._links:
            self._links.discard(link)
            link.abort(how)
