"""``silobridge topology apply|diff|prune``: the broker objects a config needs, and leftovers.

``diff`` and ``prune`` find the queues of routes that were removed from the config through the
manifest every declaration writes (``middleware/broker/rabbitmq/manifest.py``): without them
those queues stay bound to the events exchange and fill forever.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from typing import Any

from middleware import plugins
from middleware.adapter import DeclaresTopology
from middleware.broker.factory import (
    blocking_channel,
    declare,
    queue_depth,
    read_manifest,
    write_manifest,
)
from middleware.broker.topology import Topology, dlq_name, queue_name, retry_name, topology_for
from middleware.cli.common import add_config_argument, add_json_argument, print_json
from middleware.config.loader import load_config
from middleware.config.models import Config

__all__ = ["register"]


def register(sub: Any) -> None:
    topology = sub.add_parser("topology", help="declare broker objects; find leftovers")
    commands = topology.add_subparsers(dest="topology_command", required=True,
                                       metavar="COMMAND")
    apply = commands.add_parser("apply", help="declare exchanges and queues (idempotent)")
    add_config_argument(apply, required=True)
    apply.set_defaults(handler=_apply)

    diff = commands.add_parser("diff", help="queues of routes that are no longer in the config")
    add_config_argument(diff, required=True)
    add_json_argument(diff)
    diff.set_defaults(handler=_diff)

    prune = commands.add_parser("prune", help="delete the queues of routes no longer in the "
                                              "config")
    add_config_argument(prune, required=True)
    prune.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    prune.add_argument("--force", action="store_true",
                       help="also delete queues that still hold messages (they are lost)")
    prune.add_argument("--route", action="append", dest="routes", metavar="ROUTE",
                       help="only this leftover route (repeatable; default: every leftover)")
    prune.set_defaults(handler=_prune)


def _apply(args: argparse.Namespace) -> int:
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
    declare(loaded.config.broker, Topology(exchanges, queues))
    print(f"declared {len(exchanges)} exchange(s) and {len(queues)} queue(s)")
    return 0


@dataclass(frozen=True)
class Leftover:
    """A route the broker has queues for and the config does not; depths None = not there."""

    route: str
    queues: dict[str, int | None]

    @property
    def messages(self) -> int:
        return sum(depth or 0 for depth in self.queues.values())

    @property
    def present(self) -> bool:
        return any(depth is not None for depth in self.queues.values())


def _leftovers(config: Config) -> list[Leftover]:
    wanted = {route.name for route in config.routes}
    with blocking_channel(config.broker, "topology") as channel:
        recorded = read_manifest(channel)
        found = []
        for route, tiers in sorted(recorded.items()):
            if route in wanted:
                continue
            names = [queue_name(route), *(retry_name(route, n) for n in range(1, tiers + 1)),
                     dlq_name(route)]
            found.append(Leftover(route, {name: queue_depth(channel, name) for name in names}))
    return found


def _diff(args: argparse.Namespace) -> int:
    config = load_config(args.config).config
    found = _leftovers(config)
    ghosts = {item.route for item in found if not item.present}
    if ghosts:  # deleted by other means: nothing to show, and nothing to look up next time
        _forget(config, ghosts)
    leftovers = [item for item in found if item.present]
    if args.json:
        print_json([{**asdict(item), "messages": item.messages} for item in leftovers])
        return 0
    if not leftovers:
        print("no leftovers: every route the broker has queues for is in the config")
        return 0
    for item in leftovers:
        print(f"- route {item.route} ({item.messages} message(s)), not in {args.config}:")
        for name, depth in item.queues.items():
            print(f"    {name}: {'absent' if depth is None else depth}")
    print(f"{len(leftovers)} route(s) to remove with: silobridge topology prune -c {args.config}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    config = load_config(args.config).config
    leftovers = _leftovers(config)
    if args.routes:
        unknown = set(args.routes) - {item.route for item in leftovers}
        if unknown:
            print(f"error: not a leftover route: {', '.join(sorted(unknown))} (see "
                  f"silobridge topology diff -c {args.config})", file=sys.stderr)
            return 2
        leftovers = [item for item in leftovers if item.route in args.routes]
    forgotten = {item.route for item in leftovers if not item.present}
    leftovers = [item for item in leftovers if item.present]
    if not leftovers:
        if forgotten:
            _forget(config, forgotten)
        print("nothing to prune")
        return 0
    full = [item for item in leftovers if item.messages]
    if full and not args.force:
        for item in full:
            print(f"error: route {item.route} still holds {item.messages} message(s); replay "
                  f"or move them first, or pass --force to delete them", file=sys.stderr)
        return 1
    names = ", ".join(item.route for item in leftovers)
    if not args.yes:
        if not sys.stdin.isatty():
            print("error: refusing to prune without --yes when not on a terminal",
                  file=sys.stderr)
            return 2
        if input(f"delete the queues of route(s) {names}? [y/N] ").strip().lower() not in (
                "y", "yes"):
            print("nothing deleted")
            return 1
    with blocking_channel(config.broker, "topology") as channel:
        for item in leftovers:
            for name, depth in item.queues.items():
                if depth is not None:
                    channel.queue_delete(name)
    _forget(config, forgotten | {item.route for item in leftovers})
    print(f"deleted the queues of {len(leftovers)} route(s): {names}")
    return 0


def _forget(config: Config, routes: set[str]) -> None:
    """Drop routes from the manifest (their queues are gone)."""
    with blocking_channel(config.broker, "topology") as channel:
        recorded = read_manifest(channel)
        write_manifest(channel, {route: tiers for route, tiers in recorded.items()
                                 if route not in routes})
