"""`clasp config show`: the config a command line resolves to (preset + overrides), as YAML."""

from __future__ import annotations

import argparse

from .common import add_overrides, load_cfg

SUMMARY = "print the config that a set of key=value overrides resolves to (YAML, a preset file)"

DESCRIPTION = """Print the full config that config=PRESET and key=value overrides resolve to, as YAML.

The output is a preset: save it to a file and pass config=FILE.yaml to any subcommand. A key or value that
does not validate is bad input (exit 2), as in every subcommand."""

EXAMPLES = """examples:
  clasp config show config=tiny train.epochs=1
  clasp config show config=unav100_i3d data.root=s3://bucket/unav100_i3d > my_run.yaml"""


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser("config", help="show the resolved config", description=SUMMARY)
    actions = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = actions.add_parser("show", help=SUMMARY, description=DESCRIPTION, epilog=EXAMPLES, config_sections=())
    add_overrides(show)
    show.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import yaml

    from ..config import to_dict

    print(yaml.safe_dump(to_dict(load_cfg(args.overrides)), sort_keys=False), end="")
    return 0
