"""``silobridge demo`` and its pieces: ``demo erp``, ``demo crm`` and ``demo config``.

The argument tree is plain argparse and imports nothing from the demo's peers, so it is built on
every CLI start at no cost. Only the handlers import the CRM, ERP and run loop, and the handlers
that need spyne (the ``demo`` extra) first check that it is installed: without it they print
one line saying how to install it, and the group is left out of ``silobridge --help``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["EXTRA_MODULES", "INSTALL_HINT", "missing_extra", "register_commands"]

EXTRA_MODULES = ("spyne",)
"""Modules only the ``demo`` extra installs (pyproject.toml); the demo ERP is a spyne service."""
INSTALL_HINT = "pip install 'silobridge[demo]'"

Handler = Callable[[argparse.Namespace], int]


def missing_extra() -> list[str]:
    """The modules of the ``demo`` extra that cannot be imported here."""
    return [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]


def register_commands(subparsers: Any) -> None:
    shown = {} if missing_extra() else {
        "help": "the live demo: daemon, demo CRM and SOAP ERP (or one of them)"}
    demo = subparsers.add_parser(
        "demo", **shown,
        description="Without a subcommand: run the daemon on the demo config with the demo CRM "
                    f"and ERP, and show what flows. Needs the demo extra: {INSTALL_HINT}.")
    demo.add_argument("--rate", type=float, default=10.0,
                      help="events per second the CRM sends (default 10)")
    demo.add_argument("--duration", type=float, metavar="S",
                      help="stop after S seconds and print the counts (default: until Ctrl-C)")
    demo.set_defaults(handler=_with_extra(_demo))
    group = demo.add_subparsers(dest="demo_command", metavar="DEMO")

    erp = group.add_parser("erp", help="a SOAP ERP (spyne): accounts, sales orders, inventory, "
                                       "shipments")
    erp.add_argument("--host", default="127.0.0.1", help="address to listen on")
    erp.add_argument("--port", type=int, default=8090, help="port to listen on")
    erp.add_argument("--write-wsdl", metavar="FILE", type=Path,
                     help="write the ERP's WSDL (address http://HOST:PORT/soap) and exit")
    erp.add_argument("--ingress", default=os.environ.get("INGRESS_URL"),
                     help="silobridge ingress base URL to report account changes to, as the "
                          "demo config expects (default: $INGRESS_URL; unset: not reported)")
    erp.set_defaults(handler=_with_extra(_erp))

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
    crm.set_defaults(handler=_with_extra(_crm))

    config = group.add_parser("config", help="print the path of the demo config this package "
                                             "ships, for `run -c`, `status -c` and `dlq -c`")
    config.set_defaults(handler=_config)


def _with_extra(handler: Handler) -> Handler:
    """*handler*, or one line on how to install the extra when it is missing."""

    def checked(args: argparse.Namespace) -> int:
        missing = missing_extra()
        if missing:
            print(f"error: silobridge demo needs the demo extra ({', '.join(missing)} is not "
                  f"installed): {INSTALL_HINT}", file=sys.stderr)
            return 1
        return handler(args)

    return checked


def _demo(args: argparse.Namespace) -> int:
    from silobridge_demo.run import run_demo

    if args.rate <= 0:
        print("error: --rate must be positive", file=sys.stderr)
        return 2
    return run_demo(args.rate, args.duration)


def _config(_args: argparse.Namespace) -> int:
    from silobridge_demo.resources import config_path

    print(config_path())
    return 0


def _erp(args: argparse.Namespace) -> int:
    from silobridge_demo.erp import generate_wsdl
    from silobridge_demo.erp_server import DemoErpServer, report_changes

    if args.write_wsdl is not None:
        args.write_wsdl.write_bytes(generate_wsdl(f"http://{args.host}:{args.port}/soap"))
        print(f"wrote {args.write_wsdl}")
        return 0
    server = DemoErpServer(args.host, args.port)
    feed = report_changes(server.state, args.ingress).start() if args.ingress else None

    def stop(_signum: int, _frame: object) -> None:
        threading.Thread(target=server.stop, name="demo-erp-stop").start()

    signal.signal(signal.SIGTERM, stop)
    print(f"demo ERP listening: SOAP {server.url} (WSDL {server.url}?wsdl), "
          f"received data at http://{args.host}:{server.port}/state; account changes "
          f"reported to {args.ingress or 'nobody (no --ingress)'}", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
    if feed is not None:
        feed.close()
    return 0


def _crm(args: argparse.Namespace) -> int:
    from silobridge_demo.crm import DemoCrm

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
