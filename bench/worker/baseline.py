"""The raw pika pass-through every worker benchmark is compared with.

As plain as it gets, and tuned the way anyone tuning pika would: one SelectConnection, a
consuming channel with prefetch 2000 and a publishing channel in confirm mode; each message is
parsed, the 20 fields of the reference mapping are mapped by hand
(``bench.mapping_engine.hand_written``) and the result is published persistent. Sources are
acked with ``multiple``, up to the highest source tag whose publishes (and all before it) are
confirmed: one ack frame per confirm frame instead of one per message, the same trick
silobridge's consumer uses, so the ratio compares the work, not the ack pattern.
"""

from __future__ import annotations

import sys
from collections import deque

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
        self.pending: deque[tuple[int, int]] = deque()  # (publish seq, source tag), in order
        self.confirmed_seqs: set[int] = set()  # confirmed one by one ahead of the oldest
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
        self.pending.append((self.seq, method.delivery_tag))

    def confirmed(self, frame: pika.frame.Method) -> None:
        if isinstance(frame.method, pika.spec.Basic.Nack):  # never ack a source not stored
            raise RuntimeError("the broker refused a published message (nack)")
        seq = frame.method.delivery_tag
        upto = seq if frame.method.multiple else 0
        if not frame.method.multiple:
            self.confirmed_seqs.add(seq)
        last_tag, acked = 0, 0
        while self.pending and (self.pending[0][0] <= upto
                                or self.pending[0][0] in self.confirmed_seqs):
            done_seq, last_tag = self.pending.popleft()
            self.confirmed_seqs.discard(done_seq)
            acked += 1
        if acked:
            self.inp.basic_ack(last_tag, multiple=True)
            self.done += acked
        if self.done >= self.total:
            self.connection.close()

    def run(self) -> None:
        self.connection.ioloop.start()


if __name__ == "__main__":
    url, source, exchange, key, total = sys.argv[1:6]
    PassThrough(url, source, exchange, key, int(total)).run()
