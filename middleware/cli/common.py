"""Helpers shared by CLI commands."""

from __future__ import annotations

import argparse
import os

from middleware.config.loader import load_config
from middleware.config.models import BrokerConfig, Config

__all__ = ["config_from_args"]


def config_from_args(args: argparse.Namespace) -> Config:
    """The ``-c`` config when given; otherwise defaults with the broker at ``AMQP_URL``."""
    if args.config:
        return load_config(args.config).config
    url = os.environ.get("AMQP_URL") or BrokerConfig.model_fields["url"].default
    return Config.model_validate({"broker": {"url": url}})
