"""The README's troubleshooting table: every case of tests/test_bad_inputs.py run through the
command line, with the exit status and the line it prints.

    python scripts/troubleshooting_table.py > table.md

then paste the rows under "Troubleshooting" in README.md (a test checks that every case is
listed there).
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_bad_inputs import CASES  # noqa: E402

from aerocolor.cli import main  # noqa: E402


def run(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(args)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, err.getvalue()


def message(code: int, err: str, tmp: Path, surface: str) -> str:
    if code == 0:
        return "(colorized)" if surface == "colorize" else "(done)"
    line = next((ln for ln in err.splitlines() if ln.startswith("error: ")), err.strip())
    return line.replace(f"{tmp}/", "").replace(f"{ROOT}/", "").replace("|", "\\|")


def main_table() -> None:
    print("| case | surface | exit | message |")
    print("|---|---|---|---|")
    for case in CASES:
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            args = case.make(tmp)
            code, err = run(args)
            print(f"| {case.name} | `aerocolor {args[0]}` | {code} | {message(code, err, tmp, args[0])} |",
                  flush=True)


if __name__ == "__main__":
    main_table()
