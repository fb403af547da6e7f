"""Calling the command line in-process from tests (importing torch again per process costs
seconds): through typer's runner, or through ``main`` as the console script does."""

from __future__ import annotations

from typer.testing import CliRunner


def run_cli(*args):
    """The CLI's result (``exit_code``, ``output``) for ``args`` (paths are turned to strings)."""
    from aerocolor.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def run_main(args: list[str], capsys) -> tuple[int, str]:
    """(exit code, standard error) of ``aerocolor ARGS`` run as the console script runs it."""
    from aerocolor.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    return code, capsys.readouterr().err
