"""``silobridge poll NAME [--once] -c CONFIG``: run a configured poller by hand.

Operators use ``--once`` to run the daily master-data batch now (after an outage, or to test a
new poller); it publishes through the same confirmed path and advances the same watermark as the
daemon's schedule. Without ``--once`` the poller runs on its schedule in the foreground. The
``OTEL_*`` variables turn tracing on as for ``silobridge run`` (each record a trace of its own);
the spans still queued are exported before the command exits.
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

from adapters.rest.poll import Poller
from adapters.rest.poll_config import PollConfig
from middleware import tracing
from middleware.adapter import AdapterContext
from middleware.broker.factory import connect
from middleware.broker.topology import topology_for
from middleware.cli.common import add_config_argument
from middleware.config.loader import load_config
from middleware.errors import SilobridgeError
from middleware.stores import open_stores

__all__ = ["register_commands"]

_CONNECT_TIMEOUT = 30.0


def register_commands(sub: Any) -> None:
    poll = sub.add_parser("poll", help="run a configured poller (see inbound type 'poll')")
    poll.add_argument("name", metavar="NAME", help="the poller's name in the config")
    add_config_argument(poll, required=True)
    poll.add_argument("--once", action="store_true",
                      help="run one poll now and exit (default: follow the schedule)")
    poll.set_defaults(handler=_poll)


def _poll(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    config = loaded.config
    pollers = {s.name: s for s in config.inbound if isinstance(s, PollConfig)}
    section = pollers.get(args.name)
    if section is None:
        known = ", ".join(sorted(pollers)) or "none"
        print(f"error: no poller named {args.name!r} in {args.config}; known: {known}",
              file=sys.stderr)
        return 2
    tracing.configure_from_env()  # a wrong OTEL_* value stops here (ConfigError)
    stores = open_stores(config.store)
    broker = connect(config.broker, topology_for(config))
    publisher = broker.publisher(name="poll")
    poller = Poller(section)
    try:
        if not publisher.start(wait=_CONNECT_TIMEOUT):
            print(f"error: broker not reachable within {_CONNECT_TIMEOUT:g}s", file=sys.stderr)
            return 1
        context = AdapterContext(publisher, config.broker, stores, loaded.base_dir,
                                 messaging=broker)
        if not args.once:
            poller.start(context)
            threading.Event().wait()  # the schedule runs until Ctrl-C; main() answers 130
            return 0
        poller.open(context)
        result = poller.run_once()
    except SilobridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        poller.close()
        publisher.stop()
        stores.close()
        tracing.shutdown()
    print(f"poll {args.name}: fetched {result.fetched}, published {result.published}, "
          f"skipped {result.skipped} already published; watermark "
          f"{result.watermark_before} -> {result.watermark_after}")
    return 0
