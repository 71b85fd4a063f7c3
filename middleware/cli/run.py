"""``silobridge run`` and ``validate``: the daemon and its config."""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from middleware import plugins
from middleware.cli.common import add_config_argument
from middleware.config.loader import SECTIONS, load_config
from middleware.config.models import Config
from middleware.errors import SilobridgeError, TopologyConflict

if TYPE_CHECKING:
    from middleware.daemon import Daemon

__all__ = ["register"]

# The sections whose secrets a role reads at start: a worker needs no webhook secret.
_ROLE_SECTIONS = {"all": SECTIONS, "ingress": ("inbound",),
                  "worker": ("routes", "audit", "systems")}


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="run the daemon")
    add_config_argument(run, required=True)
    run.add_argument("--role", choices=["all", "ingress", "worker"], default="all",
                     help="run ingress, workers, or both (default) in this process")
    run.add_argument("--log-format", choices=["auto", "json", "console"], default="auto",
                     help="JSON lines (containers) or console; auto picks by terminal")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                     default="info", help="lowest level logged (default info)")
    # set by the supervisor (middleware/supervisor.py) on the processes it starts
    run.add_argument("--child-ops-port", type=int, help=argparse.SUPPRESS)
    run.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    run.add_argument("--no-console", action="store_true", help=argparse.SUPPRESS)
    run.set_defaults(handler=_run)

    validate = sub.add_parser("validate", help="check a config and every mapping it uses")
    add_config_argument(validate, required=True)
    validate.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    loaded = load_config(args.config, secrets=SECTIONS)
    routes = loaded.config.routes
    print(f"{args.config}: valid ({len(routes)} route(s), "
          f"{len(loaded.config.inbound)} inbound adapter(s))")
    for section in loaded.config.inbound:
        spec = plugins.get(section.type)
        for warning in spec.advise(section) if spec and spec.advise else []:
            print(f"warning: {warning}", file=sys.stderr)
    for route in routes:
        spec = plugins.get(route.target.type)
        for warning in spec.target_advice(route.target) if spec and spec.target_advice else []:
            print(f"warning: route {route.name}: {warning}", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace) -> int:
    from middleware import tracing
    from middleware.daemon import Daemon, Role
    from middleware.log import configure_logging

    configure_logging(json={"auto": None, "json": True, "console": False}[args.log_format],
                      level=args.log_level)
    loaded = load_config(args.config, secrets=_ROLE_SECTIONS[args.role])
    if args.child_ops_port is not None:
        _as_child(loaded.config, args)
    elif loaded.config.processes.supervised:
        tracing.check_env()  # the processes it starts trace; a wrong OTEL_* stops us here
        return _supervise(loaded.config, args)
    # before the daemon: workers and endpoints take their tracer when they are made
    if tracing.configure_from_env():
        atexit.register(tracing.shutdown)  # export the spans still queued
    try:
        daemon = Daemon(loaded, Role(args.role))
    except SilobridgeError as exc:  # the store: unreachable, or migrated by a newer release
        print(f"error: {exc}", file=sys.stderr)
        return 1
    daemon.watchdog.install()  # a thread's death is logged masked and ends the process
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
        if daemon.watchdog.check() is not None:
            return _stop_after_death(daemon)
    return 0 if daemon.stop() else 1


def _as_child(config: Config, args: argparse.Namespace) -> None:
    """A supervised process: its own ops port, the shared ingress port, at most one console."""
    config.ops.port = args.child_ops_port
    config.ingress.reuse_port = config.ingress.reuse_port or args.reuse_port
    if args.no_console:
        config.console.enabled = False


def _supervise(config: Config, args: argparse.Namespace) -> int:
    from middleware.supervisor import Supervisor

    wanted = ("ingress", "worker") if args.role == "all" else (args.role,)
    has_work = {"ingress": bool(config.inbound), "worker": bool(config.routes)}
    roles = tuple(role for role in wanted if has_work[role])
    supervisor = Supervisor(config, str(args.config), roles, log_format=args.log_format,
                            log_level=args.log_level)
    try:
        return supervisor.run()
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _stop_after_death(daemon: Daemon) -> int:
    """Stop what still runs and exit with the watchdog's code, so the orchestrator restarts us.

    Bounded: a dead thread may own something ``stop`` waits for, and a process that hangs on
    its way out is as useless as one that never noticed the death.
    """
    code = daemon.watchdog.exit_code or 1
    deadline = threading.Timer(daemon.config.shutdown_grace + 15, os._exit, (code,))
    deadline.daemon = True
    deadline.start()
    daemon.stop()
    return code


def _tune_gc() -> None:
    """Keep the cyclic garbage collector off the per-message path of a daemon process.

    Done by the command that owns the process, not by ``Daemon``, which also runs inside
    other processes (tests, the demo) whose collector settings are theirs.

    Everything loaded at start (modules, compiled mappings and schemas, pydantic validators)
    lives as long as the process, yet a full collection would scan it again and again while
    thousands of prefetched messages are in flight: the worker benchmark showed a dozen full
    collections per 20,000 messages. Freezing moves it out of the collector's sight; a larger
    first-generation threshold makes the young collections rarer. Message processing creates
    few reference cycles, so garbage still goes promptly by reference counting. That must hold
    on the failure paths too: a cycle per failed message lives until a rare full collection,
    and aiohttp's timeout errors made one per failed REST request (``adapters.rest.session``
    drops their frames; ``tests/collector.py`` is how the tests check).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)
