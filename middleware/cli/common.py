"""Helpers shared by CLI commands: the config option, output as JSON."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import orjson

from middleware.config.loader import load_config
from middleware.config.models import BrokerConfig, Config

__all__ = ["add_config_argument", "add_json_argument", "config_from_args", "print_json"]

CONFIG_ENV = "SILOBRIDGE_CONFIG"


def add_config_argument(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """``-c/--config``, defaulting to ``$SILOBRIDGE_CONFIG``; required only when unset."""
    default = os.environ.get(CONFIG_ENV) or None
    if required:
        parser.add_argument("-c", "--config", required=default is None, default=default,
                            metavar="FILE", help=f"config file (YAML); default ${CONFIG_ENV}")
    else:
        parser.add_argument("-c", "--config", default=default, metavar="FILE",
                            help=f"config file (broker settings, routes); default ${CONFIG_ENV}, "
                                 "else AMQP_URL or the local default broker")


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print JSON (one document) instead of a table, for scripts")


def print_json(document: Any, *, one_line: bool = False) -> None:
    """Indented for people, or one line per document for a stream (``--watch``)."""
    option = 0 if one_line else orjson.OPT_INDENT_2
    sys.stdout.write(orjson.dumps(document, option=option, default=str).decode() + "\n")


def config_from_args(args: argparse.Namespace) -> Config:
    """The ``-c`` config when given; otherwise defaults with the broker at ``AMQP_URL``."""
    if args.config:
        return load_config(args.config).config
    url = os.environ.get("AMQP_URL") or BrokerConfig.model_fields["url"].default
    return Config.model_validate({"broker": {"url": url}})
