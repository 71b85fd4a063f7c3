"""The raw pika pass-through every worker benchmark is compared with.

As plain as it gets: one SelectConnection, a consuming channel with prefetch 2000 and a
publishing channel in confirm mode; each message is parsed, the 20 fields of the reference
mapping are mapped by hand (``bench.mapping_engine.hand_written``), the result is published
persistent, and the source is acked once the broker confirmed it.
"""

from __future__ import annotations

import sys

import orjson
import pika
from pika.adapters.select_connection import SelectConnection

from bench.mapping_engine import hand_written

PREFETCH = 2000


class PassThrough:
    def __init__(self, url: str, source: str, exchange: str, routing_key: str, total: int) -> None:
        self.source, self.exchange, self.routing_key = source, exchange, routing_key
        self.total = total
        self.done = 0
        self.seq = 0
        self.pending: dict[int, int] = {}  # publish seq -> source delivery tag
        self.connection = SelectConnection(
            pika.URLParameters(url), on_open_callback=self.opened,
            on_close_callback=lambda connection, _reason: connection.ioloop.stop(),
        )

    def opened(self, connection: SelectConnection) -> None:
        connection.channel(on_open_callback=self.publish_channel)

    def publish_channel(self, channel: pika.channel.Channel) -> None:
        self.out = channel
        channel.confirm_delivery(ack_nack_callback=self.confirmed,
                                 callback=lambda _f: self.connection.channel(
                                     on_open_callback=self.consume_channel))

    def consume_channel(self, channel: pika.channel.Channel) -> None:
        self.inp = channel
        channel.basic_qos(prefetch_count=PREFETCH)
        channel.basic_consume(self.source, self.message)

    def message(self, _ch: object, method: pika.spec.Basic.Deliver,
                props: pika.BasicProperties, body: bytes) -> None:
        event = orjson.loads(body)
        event["data"] = hand_written(event["data"])
        self.out.basic_publish(self.exchange, self.routing_key, orjson.dumps(event),
                               pika.BasicProperties(delivery_mode=2,
                                                    message_id=props.message_id))
        self.seq += 1
        self.pending[self.seq] = method.delivery_tag

    def confirmed(self, frame: pika.frame.Method) -> None:
        if isinstance(frame.method, pika.spec.Basic.Nack):  # never ack a source not stored
            raise RuntimeError("the broker refused a published message (nack)")
        tag = frame.method.delivery_tag
        tags = [tag]
        if frame.method.multiple:
            tags = []
            for t in self.pending:  # in publish order
                if t > tag:
                    break
                tags.append(t)
        for t in tags:
            self.inp.basic_ack(self.pending.pop(t))
            self.done += 1
        if self.done >= self.total:
            self.connection.close()

    def run(self) -> None:
        self.connection.ioloop.start()


if __name__ == "__main__":
    url, source, exchange, key, total = sys.argv[1:6]
    PassThrough(url, source, exchange, key, int(total)).run()
