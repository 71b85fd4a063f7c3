"""``silobridge completion bash|zsh|tcsh``: a shell completion script, made from the parser.

shtab reads the argparse tree, so the script completes exactly the commands and options that
exist (adapter commands included) without a completion hook running at every keypress.
"""

from __future__ import annotations

import argparse
from typing import Any

import shtab

__all__ = ["register"]


def register(sub: Any) -> None:
    completion = sub.add_parser(
        "completion", help="print a shell completion script",
        description="Print a completion script; e.g. for bash: "
                    "silobridge completion bash > ~/.local/share/bash-completion/completions/"
                    "silobridge")
    completion.add_argument("shell", choices=["bash", "zsh", "tcsh"], help="the shell")
    completion.set_defaults(handler=_completion)


def _completion(args: argparse.Namespace) -> int:
    from middleware.cli import _parser

    print(shtab.complete(_parser(), shell=args.shell))
    return 0
