"""The `defectlens` command run in the test's own process (no interpreter start-up, no
second import of torch), its output captured: what a log file of the command holds."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from defectlens.cli import main


@dataclass
class Run:
    code: int
    out: str
    err: str


def run(*args: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return Run(code, out.getvalue(), err.getvalue())
