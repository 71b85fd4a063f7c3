"""``silobridge demo`` (everything at once, with a live view) and ``silobridge demo crm``.

The ``demo`` group is shared with the SOAP adapter's ``demo erp``: whichever package registers
first creates it (``demo_subparsers``). Here the group also becomes a command of its own, so
its subcommand is optional.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from adapters.soap.cli import demo_subparsers

__all__ = ["register_commands"]


def register_commands(subparsers: Any) -> None:
    group = demo_subparsers(subparsers)
    group.required = False
    demo = subparsers.choices["demo"]
    demo.description = ("Without a subcommand: run the daemon on mappings/demo.yaml with the "
                        "demo CRM and ERP, and show what flows.")
    demo.add_argument("--rate", type=float, default=10.0,
                      help="events per second the CRM sends (default 10)")
    demo.add_argument("--duration", type=float, metavar="S",
                      help="stop after S seconds and print the counts (default: until Ctrl-C)")
    demo.set_defaults(handler=_demo)

    crm = group.add_parser("crm", help="a CRM that sends signed webhooks for customers and "
                                       "won orders and takes status callbacks")
    crm.add_argument("--host", default="127.0.0.1", help="address for callbacks and /state")
    crm.add_argument("--port", type=int, default=8091, help="port for callbacks and /state")
    crm.add_argument("--ingress", default=os.environ.get("INGRESS_URL", "http://127.0.0.1:8080"),
                     help="silobridge ingress base URL (default: $INGRESS_URL or "
                          "http://127.0.0.1:8080)")
    crm.add_argument("--rate", type=float, default=1.0, help="events per second (default 1)")
    crm.add_argument("--bad-every", type=int, default=25, metavar="N",
                     help="make every N-th event one the ERP side refuses, so the DLQ has "
                          "something to show (default 25; 0: none)")
    crm.set_defaults(handler=_crm)


def _demo(args: argparse.Namespace) -> int:
    from adapters.demo.run import run_demo

    if args.rate <= 0:
        print("error: --rate must be positive", file=sys.stderr)
        return 2
    return run_demo(args.rate, args.duration)


def _crm(args: argparse.Namespace) -> int:
    from adapters.demo.crm import DemoCrm

    if args.rate <= 0:
        print("error: --rate must be positive", file=sys.stderr)
        return 2
    crm = DemoCrm(args.ingress, args.host, args.port, rate=args.rate, bad_every=args.bad_every)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    crm.start()
    print(f"demo CRM: sending {args.rate:g} events/s to {args.ingress}, callbacks and /state "
          f"on http://{args.host}:{crm.server.port}", file=sys.stderr)
    try:
        while not stopped.wait(10):
            sent = crm.counts()
            print(f"sent {sent.customers} customers, {sent.orders} won orders; refused by the "
                  f"ingress {sent.refused}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    crm.stop()
    return 0
