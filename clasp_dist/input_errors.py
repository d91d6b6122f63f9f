"""One line, one exit status for bad input, for every command: `error: <file>: <entry>: <field>: <reason>`.

A command's main runs inside :func:`report_bad_input`; the error classes of every reader (data plane, config,
checkpoint, evaluator, input bounds) and the file-system errors of a wrong path end there as one line on stderr
and exit status :data:`BAD_INPUT_EXIT`, never a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Callable

BAD_INPUT_EXIT = 2
"""Exit status of a command refused for its input (argparse's usage errors use 2 as well)."""
MAX_ERROR_CHARS = 1000
"""An error line is cut to this many characters (the values it quotes are already cut to limits.QUOTE_CHARS)."""


def bad_input_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that mean bad input (imported when an error happens, so --help stays fast)."""
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .data.annotations import AnnotationError
    from .data.errors import DataError
    from .evaluation.metric import EvaluationInputError
    from .limits import InputLimitError

    return (
        DataError,
        ConfigError,
        CheckpointError,
        EvaluationInputError,
        AnnotationError,
        InputLimitError,
        FileNotFoundError,
        NotADirectoryError,
        IsADirectoryError,
        PermissionError,
        FileExistsError,
    )


def error_line(err: BaseException) -> str:
    """`error: ...`: the message on one line, cut to MAX_ERROR_CHARS."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()] or [type(err).__name__]
    # a multi-line message (a config with several bad keys) on one line; a Ray error's traceback never
    text = lines[0] if any("Traceback" in line for line in lines) else " ".join(lines)
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    return "error: " + (text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "...")


def report_bad_input(main: Callable[[], int]) -> int:
    """Run `main`; bad input ends as one `error:` line on stderr and exit status BAD_INPUT_EXIT."""
    try:
        return main()
    except Exception as err:  # noqa: BLE001 - filtered just below; everything else re-raised untouched
        if not isinstance(err, bad_input_errors()):
            raise
        print(error_line(err), file=sys.stderr)
        return BAD_INPUT_EXIT
