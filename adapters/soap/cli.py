"""``silobridge demo erp``: run the demo SOAP ERP, or write its WSDL for a target config.

Other adapters add their own ``demo`` subcommands: ``demo_subparsers`` finds the ``demo`` group
if someone created it already and creates it otherwise, and ``register_demo_erp`` adds ``erp``
to any such group.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["demo_subparsers", "register_commands", "register_demo_erp"]


def demo_subparsers(subparsers: Any) -> Any:
    """The subparsers of the ``demo`` command group, created on first use."""
    demo = subparsers.choices.get("demo")
    if demo is None:
        demo = subparsers.add_parser("demo", help="demo peers to integrate against")
        return demo.add_subparsers(dest="demo_command", required=True, metavar="DEMO")
    return next(action for action in demo._actions
                if isinstance(action, argparse._SubParsersAction))


def register_demo_erp(demo: Any) -> None:
    """Add ``erp`` to a ``demo`` subparsers object."""
    erp = demo.add_parser("erp", help="a SOAP ERP (spyne): accounts, sales orders, inventory, "
                                      "shipments")
    erp.add_argument("--host", default="127.0.0.1", help="address to listen on")
    erp.add_argument("--port", type=int, default=8090, help="port to listen on")
    erp.add_argument("--write-wsdl", metavar="FILE", type=Path,
                     help="write the ERP's WSDL (address http://HOST:PORT/soap) and exit")
    erp.set_defaults(handler=_demo_erp)


def register_commands(subparsers: Any) -> None:
    register_demo_erp(demo_subparsers(subparsers))


def _demo_erp(args: argparse.Namespace) -> int:
    from adapters.soap.demo_erp import generate_wsdl
    from adapters.soap.demo_server import DemoErpServer

    if args.write_wsdl is not None:
        args.write_wsdl.write_bytes(generate_wsdl(f"http://{args.host}:{args.port}/soap"))
        print(f"wrote {args.write_wsdl}")
        return 0
    server = DemoErpServer(args.host, args.port)

    def stop(_signum: int, _frame: object) -> None:
        threading.Thread(target=server.stop, name="demo-erp-stop").start()

    signal.signal(signal.SIGTERM, stop)
    print(f"demo ERP listening: SOAP {server.url} (WSDL {server.url}?wsdl), "
          f"received data at http://{args.host}:{server.port}/state", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
    return 0
