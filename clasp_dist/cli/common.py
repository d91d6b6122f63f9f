"""What every subcommand shares: `key=value` config overrides, `--help` with the config keys, the `error: ` prefix
and the exit codes, and the one handler that turns the project's bad-input errors into one line on stderr."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable

EXIT_OK = 0
EXIT_PROBLEMS = 1
"""The command ran and reports problems: `data inspect` found some in the dataset, a `tune` trial failed (an
unexpected failure, a bug, also exits 1, with Python's traceback)."""
EXIT_BAD_INPUT = 2
"""The command could not use its input: a bad argument or config key, a dataset, checkpoint or storage location
that is missing or broken. One line `error: ...` on stderr, no traceback."""

MAX_ERROR_CHARS = 1000
"""An error line is cut to this many characters (the values it quotes are already cut to limits.QUOTE_CHARS)."""

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


def check_before_ray(
    checkpoint: str | None = None,
    data: str | None = None,
    split: str | None = None,
    out_file: str | None = None,
    out_dir: str | None = None,
    storage=None,
) -> None:
    """What a command can refuse before Ray starts (seconds, not the 15-25 s of a Ray start-up): a wrong-kind
    output path, an unknown split, a dataset root without a readable manifest, a local checkpoint whose
    model.json is malformed (in this order: the cheap checks first, the checkpoint's loads torch). Raises the readers' own errors (one line each under `run_handled`)."""
    from ..limits import check_output_dir, check_output_file

    if out_file:
        check_output_file(out_file, "output file")
    if out_dir:
        check_output_dir(out_dir, "output folder")
    from ..data.splits import split_name

    if split is not None:
        from ..data.errors import DataError

        if split_name(split) is None:
            raise DataError(f"unknown split {split[:100]!r} (use train, validation or test)")
    if data:
        from ..data.manifest import read_manifest

        manifest = read_manifest(data, storage)
        if split is not None:
            manifest.split(split_name(split))
    from ..data.filesystem import is_url

    if checkpoint and not is_url(checkpoint):
        from pathlib import Path

        from ..training.checkpoint import check_checkpoint

        check_checkpoint(Path(checkpoint))


BAD_INPUT_TYPES = (
    ("config", "ConfigError"),
    ("data.errors", "DataError"),
    ("data.annotations", "AnnotationError"),
    ("training.checkpoint", "CheckpointError"),
    ("training.driver", "TrainingDataError"),
    ("training.preflight", "UnsatisfiableRequestError"),
    ("evaluation.results", "EvaluationInputError"),
    ("limits", "InputLimitError"),
)
"""(module under clasp_dist, class) of the project's errors that mean bad input: config, data and storage (a
DataError), annotations, checkpoint and run identity (a CheckpointError), training data, an unsatisfiable resource
request, evaluation input, an input over one of the bounds of `clasp_dist.limits`."""
OS_BAD_INPUT_TYPES = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)
"""The file-system errors of a wrong path."""


def bad_input_types() -> tuple[type[BaseException], ...]:
    """The error types that mean bad input. An error's class is loaded with its module, so only the modules
    already imported are looked in: handling an error never imports torch (files-only commands stay light)."""
    package = __package__.rsplit(".", 1)[0]
    loaded = [sys.modules.get(f"{package}.{module}") for module, _ in BAD_INPUT_TYPES]
    project = [getattr(module, name) for module, (_, name) in zip(loaded, BAD_INPUT_TYPES) if module is not None]
    return (CommandError, *project, *OS_BAD_INPUT_TYPES)


def error_line(err: BaseException) -> str:
    """`error: ...`: the message on one line (a config with several bad keys joined; of a message that carries a
    traceback, a Ray error's, only its first line), the path of a file-system error named, cut to MAX_ERROR_CHARS."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()] or [type(err).__name__]
    text = lines[0] if any("Traceback" in line for line in lines) else " ".join(lines)
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    return "error: " + (text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "...")


def run_handled(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a subcommand: bad input becomes one `error: ...` line on stderr and EXIT_BAD_INPUT; anything else (a bug)
    keeps its traceback."""
    try:
        return run(args)
    except Exception as err:
        if not isinstance(err, bad_input_types()):
            raise
        print(error_line(err), file=sys.stderr)
        return EXIT_BAD_INPUT
