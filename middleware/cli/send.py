"""``silobridge send``: wrap a JSON file in an envelope and publish it, confirmed.

With tracing on (the ``OTEL_*`` variables, as for ``silobridge run``) the event starts a trace:
its root ``publish`` span is written into the envelope, exported before the command exits, and
its trace id printed, so the routes' spans of a hand-sent event can be found.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from middleware.broker.factory import connect
from middleware.broker.ingest import publish_envelopes
from middleware.cli.common import add_config_argument, config_from_args
from middleware.envelope import Envelope
from middleware.errors import BrokerError

__all__ = ["register"]


def register(sub: Any) -> None:
    send = sub.add_parser("send", help="publish a JSON file as an event")
    send.add_argument("file", help="JSON payload (the event's data); '-' reads standard input")
    send.add_argument("--type", required=True, help="event type, e.g. crm.customer.updated")
    send.add_argument("--source", default="cli/silobridge-send", help="event source")
    send.add_argument("--subject", help="business key, e.g. the customer number")
    send.add_argument("--id", help="event id (default: a new UUID)")
    add_config_argument(send, required=False)
    send.set_defaults(handler=_send)


def _send(args: argparse.Namespace) -> int:
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        data = orjson.loads(raw)
    except (OSError, orjson.JSONDecodeError) as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 2
    envelope = Envelope.new(source=args.source, type=args.type, data=data,
                            subject=args.subject, id=args.id)
    config = config_from_args(args)
    from middleware import tracing  # the SDK only for this command, not every CLI start

    tracing.configure_from_env()  # a wrong OTEL_* value stops here (ConfigError)
    publisher = connect(config.broker).publisher(name="send")
    try:
        if not publisher.start(wait=10):
            print("error: cannot connect to the broker", file=sys.stderr)
            return 1
        with tracing.starting("send", "cli", [envelope]) as publishing:
            publish_envelopes(publisher, [envelope], timeout=config.broker.publish_timeout)
            publishing.confirmed([envelope.id])
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        publisher.stop()
        tracing.shutdown()  # export the span before the process ends
    trace = f" trace_id={envelope.traceparent[3:35]}" if envelope.traceparent else ""
    print(f"sent {envelope.type} id={envelope.id}{trace}")
    return 0
