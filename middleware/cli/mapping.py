"""``silobridge mapping test|run`` and ``silobridge schema mapping``: tools for integrators.

They work on files alone (no broker, no store), so a mapping can be written and tested on a
laptop before a daemon ever sees it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from middleware.errors import ConfigError, ProcessingError
from middleware.mapping import load_mapping
from middleware.mapping.spec import json_schema
from middleware.mapping.testing import CaseResult, discover, link_lookup, run_file

__all__ = ["register"]


def register(sub: Any) -> None:
    mapping = sub.add_parser("mapping", help="test and run mapping files")
    commands = mapping.add_subparsers(dest="mapping_command", required=True, metavar="COMMAND")

    test = commands.add_parser("test", help="run the *.test.yaml cases beside mappings")
    test.add_argument("paths", nargs="*", type=Path, default=[Path("mappings")],
                      metavar="PATH", help="directories, test files or mappings (default: "
                                           "mappings)")
    test.set_defaults(handler=_test)

    run = commands.add_parser("run", help="apply one mapping to a JSON file and print the result")
    run.add_argument("mapping", type=Path, metavar="MAPPING", help="mapping file")
    run.add_argument("--input", required=True, type=Path, metavar="FILE.json",
                     help="source payload ('-' reads standard input)")
    run.add_argument("--reverse", action="store_true", help="apply the derived reverse mapping")
    run.add_argument("--xref", action="append", default=[], metavar="LINK",
                     help="a link for lookups, 'crm.customer:C-1 <-> erp.account:A-7' "
                          "(repeatable)")
    run.add_argument("--no-validate", action="store_true",
                     help="skip the source and target JSON Schema checks")
    run.set_defaults(handler=_run)

    schema = sub.add_parser("schema", help="JSON Schemas of silobridge file formats")
    formats = schema.add_subparsers(dest="schema_command", required=True, metavar="FORMAT")
    formats.add_parser("mapping", help="the mapping file format, for editor autocompletion"
                       ).set_defaults(handler=_schema)
    formats.add_parser("config", help="the config file format (adapters included), for "
                                      "editor autocompletion").set_defaults(handler=_config_schema)


def _test(args: argparse.Namespace) -> int:
    files = discover(args.paths)
    if not files:
        print(f"no *.test.yaml found under {', '.join(map(str, args.paths))}", file=sys.stderr)
        return 1
    results: list[CaseResult] = []
    broken = 0
    for file in files:
        try:
            results += run_file(file)
        except ConfigError as exc:
            broken += 1
            print(f"ERROR {file}")
            for problem in exc.problems:
                print(f"    {problem}")
    for result in results:
        print(f"{'ok  ' if result.ok else 'FAIL'} {result.file} :: {result.name}")
        if not result.ok:
            print("\n".join(f"    {line}" for line in result.detail.splitlines()))
    failed = sum(not r.ok for r in results)
    print(f"\n{len(results) - failed} passed, {failed} failed, {broken} file(s) with errors")
    return 1 if failed or broken else 0


def _run(args: argparse.Namespace) -> int:
    mapping = load_mapping(args.mapping)
    if args.reverse:
        mapping = mapping.reverse()
    try:
        lookup = link_lookup(args.xref)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = sys.stdin.read() if str(args.input) == "-" else args.input.read_text(encoding="utf-8")
    try:
        source = json.loads(text)
    except ValueError as exc:
        print(f"error: {args.input} is not JSON: {exc}", file=sys.stderr)
        return 2
    try:
        if not args.no_validate:
            mapping.validate_source(source)
        result = mapping.apply(source, lookup)
        if not args.no_validate:
            mapping.validate_target(result)
    except ProcessingError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    return 0


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def _config_schema(args: argparse.Namespace) -> int:
    from middleware.config.reference import json_schema as config_schema

    print(json.dumps(config_schema(), indent=2))
    return 0
