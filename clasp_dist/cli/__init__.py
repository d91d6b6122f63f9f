"""The `clasp` command line: one module per subcommand (train, tune, evaluate, predict, diagnose, data,
show_config), the dispatch in `app`, their shared plumbing in `common` (overrides, help, error prefix, exit codes) and Ray start-up in
`ray_start`. `python -m clasp_dist.cli ...` is the same as `clasp ...`."""

from .ray_start import init_ray, pin_data_tracker_to_this_node, private_tmpdir_for_ray

__all__ = ["init_ray", "main", "pin_data_tracker_to_this_node", "private_tmpdir_for_ray"]


def main(argv: list[str] | None = None) -> int:
    """`clasp` with `argv` (default: the process's arguments); returns the exit status."""
    from .app import main as clasp_main

    return clasp_main(argv)
