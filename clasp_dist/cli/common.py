"""What every subcommand shares: `key=value` config overrides, `--help` with the config keys, the `error: ` prefix
and the exit codes, and the one handler that turns the project's bad-input errors into one line on stderr."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Iterable

EXIT_OK = 0
EXIT_PROBLEMS = 1
"""The command ran and reports problems: `data inspect` found some in the dataset, a `tune` trial failed (an
unexpected failure, a bug, also exits 1, with Python's traceback)."""
EXIT_BAD_INPUT = 2
"""The command could not use its input: a bad argument or config key, a dataset, checkpoint or storage location
that is missing or broken. One line `error: ...` on stderr, no traceback."""

EXIT_CODES_HELP = f"""exit status:
  {EXIT_OK}  done
  {EXIT_PROBLEMS}  problems found and reported (data inspect: the dataset has problems; tune: a trial failed),
     or an unexpected failure (a bug: Python's traceback is printed)
  {EXIT_BAD_INPUT}  bad input: an unknown command, flag or config key, a value that does not validate, a dataset,
     checkpoint or storage location that is missing or broken; one line on stderr starting with 'error: '"""


class CommandError(Exception):
    """Input the command cannot use, found by the command line itself (e.g. a missing `data.root=`)."""


class Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors say `error: ...` and exit EXIT_BAD_INPUT, and whose `--help` ends with
    the config keys (with the values that would run) when `config_sections` is set: None = no keys, () = all."""

    argv: list[str] = []
    """The command line being parsed: `--help` shows the values its overrides give."""

    def __init__(
        self,
        *args,
        config_sections: Iterable[str] | None = None,
        help_tail: Callable[[], str] | None = None,
        **kwargs,
    ):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.config_sections = None if config_sections is None else tuple(config_sections)
        self.help_tail = help_tail
        """Text added to `--help` only when it is shown (it may import what parsing never needs)."""

    def format_help(self) -> str:
        text = super().format_help()
        if self.help_tail is not None:
            text = f"{text}\n{self.help_tail()}\n"
        if self.config_sections is None:
            return text
        from ..config import help_text

        return f"{text}\n{help_text(Parser.argv, self.config_sections or None)}\n"

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"error: {message}\n")


def add_overrides(parser: argparse.ArgumentParser, example: str = "train.epochs=1") -> None:
    """The positional `key=value` config overrides every config-reading subcommand takes."""
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help=f"config=PRESET selects a preset; any other dotted key sets a field (e.g. {example}); keys below",
    )


def load_cfg(overrides: Iterable[str]):
    """The typed config of a command line (a ConfigError, bad input, when a key or value does not validate)."""
    from ..config import load_config

    return load_config(list(overrides))


def override_value(overrides: Iterable[str], key: str) -> str | None:
    """The value the last `key=...` among `overrides` sets (None when none does)."""
    values = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].strip() == key]
    return values[-1] if values else None


def require_data_root(cfg) -> str:
    if not cfg.data.root:
        raise CommandError("give the dataset root as data.root=ROOT (a local path, s3:// or gs:// URL)")
    return cfg.data.root


def bad_input_types() -> tuple[type[BaseException], ...]:
    """The error types that mean bad input: config, data, storage (a DataError), checkpoint and run identity
    (a CheckpointError), training data, an unsatisfiable resource request, evaluation input, a missing file.
    Imported only once an error is being handled, so that `--help` and files-only commands stay light."""
    from ..training.checkpoint import CheckpointError
    from ..config import ConfigError
    from ..data.errors import DataError
    from ..evaluation.metric import EvaluationInputError
    from ..training.driver import TrainingDataError
    from ..training.preflight import UnsatisfiableRequestError

    return (
        CommandError,
        ConfigError,
        DataError,
        CheckpointError,
        TrainingDataError,
        UnsatisfiableRequestError,
        EvaluationInputError,
        FileNotFoundError,
    )


def run_handled(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a subcommand: bad input becomes `error: ...` on stderr and EXIT_BAD_INPUT; anything else (a bug)
    keeps its traceback."""
    try:
        return run(args)
    except Exception as err:
        if not isinstance(err, bad_input_types()):
            raise
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
