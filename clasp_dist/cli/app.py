"""`clasp`: the project's one command line. Each subcommand lives in its own module of this package, which
declares its arguments (`add_parser`) and does its work (`run`); this module only dispatches."""

from __future__ import annotations

import re
import sys

from . import data, diagnose, evaluate, predict, show_config, train, tune
from .common import EXIT_BAD_INPUT, EXIT_CODES_HELP, Parser, run_handled

OVERRIDE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*=")
"""A `key=value` config override (dotted key), told apart from other words of a command line."""

SUBCOMMANDS = (train, tune, evaluate, predict, diagnose, data, show_config)
"""In the order `clasp --help` lists them."""

DESCRIPTION = """CLASP on Ray + DeepSpeed: train, sweep, evaluate, predict, diagnose; build and check shard datasets.

Every setting that is a config key is given as key=value (config=PRESET picks a preset; data.root=ROOT is the
dataset everywhere; storage.* reaches S3/GCS); `clasp SUBCOMMAND --help` lists the keys with the values that
would run. Flags (--out DIR, --checkpoint CKPT, --split ...) are what no config key says; --out is always the
folder a command writes into."""


def build_parser() -> Parser:
    parser = Parser(prog="clasp", description=DESCRIPTION, epilog=EXIT_CODES_HELP)
    commands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    Parser.argv = argv
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    collect_overrides(parser, args, extra)
    return run_handled(args.run, args)


def collect_overrides(parser: Parser, args, extra: list[str]) -> None:
    """argparse takes one run of positionals: `key=value` words after a flag come back unparsed. They are
    overrides too (in command-line order, so the last of a key wins); anything else is an unknown argument."""
    unknown = [word for word in extra if not OVERRIDE.match(word)]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]


__all__ = ["EXIT_BAD_INPUT", "main"]
