"""``silobridge run``, ``validate`` and ``topology apply``: the daemon and its config."""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import threading
from typing import Any

from middleware import plugins
from middleware.adapter import DeclaresTopology
from middleware.broker.declare import declare
from middleware.broker.topology import Topology, topology_for
from middleware.config.loader import load_config
from middleware.errors import SilobridgeError, TopologyConflict

__all__ = ["register"]


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", required=True, help="config file (YAML)")
    run.add_argument("--role", choices=["all", "ingress", "worker"], default="all",
                     help="run ingress, workers, or both (default) in this process")
    run.add_argument("--log-format", choices=["auto", "json", "console"], default="auto",
                     help="JSON lines (containers) or console; auto picks by terminal")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                     default="info", help="lowest level logged (default info)")
    run.set_defaults(handler=_run)

    validate = sub.add_parser("validate", help="check a config and every mapping it uses")
    validate.add_argument("-c", "--config", required=True)
    validate.set_defaults(handler=_validate)

    topology = sub.add_parser("topology", help="broker topology")
    topology_sub = topology.add_subparsers(dest="topology_command", required=True)
    apply = topology_sub.add_parser("apply", help="declare exchanges and queues (idempotent)")
    apply.add_argument("-c", "--config", required=True)
    apply.set_defaults(handler=_topology_apply)


def _validate(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    routes = loaded.config.routes
    print(f"{args.config}: valid ({len(routes)} route(s), "
          f"{len(loaded.config.inbound)} inbound adapter(s))")
    return 0


def _topology_apply(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    parts = [topology_for(loaded.config)]
    for route in loaded.config.routes:
        spec = plugins.get(route.target.type)
        assert spec is not None and spec.outbound is not None  # checked by the loader
        target = spec.outbound(route.target)
        if isinstance(target, DeclaresTopology):
            parts.append(target.topology())
    exchanges = [e for part in parts for e in part.exchanges]
    queues = [q for part in parts for q in part.queues]
    try:
        declare(loaded.config.broker, Topology(exchanges, queues))
    except SilobridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"declared {len(exchanges)} exchange(s) and {len(queues)} queue(s)")
    return 0


def _run(args: argparse.Namespace) -> int:
    from middleware.daemon import Daemon, Role
    from middleware.log import configure_logging

    configure_logging(json={"auto": None, "json": True, "console": False}[args.log_format],
                      level=args.log_level)
    loaded = load_config(args.config)
    daemon = Daemon(loaded, Role(args.role))
    stop = threading.Event()

    def request_stop(*_: object) -> None:
        stop.set()
        daemon.stopped.set()  # also ends a start still waiting for an unreachable broker

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGHUP, lambda *_: daemon.reload_mappings())
    try:
        daemon.start()
    except TopologyConflict as exc:
        print(f"error: {exc}", file=sys.stderr)
        daemon.stop()
        return 2
    except (SilobridgeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        daemon.stop()
        return 1
    _tune_gc()
    while not stop.wait(0.5):
        pass
    return 0 if daemon.stop() else 1


def _tune_gc() -> None:
    """Keep the cyclic garbage collector off the per-message path of a daemon process.

    Done by the command that owns the process, not by ``Daemon``, which also runs inside
    other processes (tests, the demo) whose collector settings are theirs.

    Everything loaded at start (modules, compiled mappings and schemas, pydantic validators)
    lives as long as the process, yet a full collection would scan it again and again while
    thousands of prefetched messages are in flight: the worker benchmark showed a dozen full
    collections per 20,000 messages. Freezing moves it out of the collector's sight; a larger
    first-generation threshold makes the young collections rarer. Message processing creates
    few reference cycles, so garbage still goes promptly by reference counting.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)
