"""Time the label store on a real labelled folder: import it into a fresh workspace, import
it again (every file known), freeze it into a dataset version, freeze again (the same
version), and export the version as YOLO. Prints one line per step and the counts.

    python scripts/label_store_times.py [--data /work/shared/datasets/deeppcb]
        [--format deeppcb] [--workspace DIR] [--repeat 3]

Each step runs --repeat times on a new workspace (a temporary folder unless --workspace),
and the median and range are printed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from defectlens.inference.service.dataset_versions import export_version, freeze_dataset
from defectlens.inference.service.labelling import import_labels
from defectlens.inference.store import Store, open_database
from defectlens.settings import Settings

T = TypeVar("T")
STEPS = ("import", "import again", "freeze", "freeze again", "export yolo")


def one_run(data: Path, format: str, home: Path) -> tuple[dict[str, float], str]:
    """The seconds of each step on a new workspace at `home`, and what was imported."""
    settings = Settings(home=home)
    times: dict[str, float] = {}
    with open_database(settings.resolved_database_url) as database:
        store = Store(database)

        def timed(step: str, work: Callable[[], T]) -> T:
            started = time.perf_counter()
            outcome = work()
            times[step] = time.perf_counter() - started
            return outcome

        report = timed(
            "import", lambda: import_labels(store, settings, format, data, "bench", True)
        )
        timed("import again", lambda: import_labels(store, settings, format, data, "bench"))
        frozen = timed("freeze", lambda: freeze_dataset(store, settings, "bench", "bench"))
        timed("freeze again", lambda: freeze_dataset(store, settings, "bench", "bench"))
        version = frozen.version.id
        timed(
            "export yolo",
            lambda: export_version(store, settings, version, "yolo", home / "export"),
        )
    summary = report.lines()[0]
    return times, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/datasets/deeppcb"))
    parser.add_argument("--format", default="deeppcb")
    parser.add_argument("--workspace", type=Path, help="where the workspaces go (default: tmp)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    parent = Path(tempfile.mkdtemp(prefix="label-times-", dir=args.workspace))
    runs: list[dict[str, float]] = []
    summary = ""
    try:
        for number in range(args.repeat):
            times, summary = one_run(args.data, args.format, parent / f"run{number}")
            runs.append(times)
            shutil.rmtree(parent / f"run{number}", ignore_errors=True)
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    print(summary)
    for step in STEPS:
        values = [run[step] for run in runs]
        print(
            f"{step:<14} {statistics.median(values):7.2f} s   "
            f"(min {min(values):.2f}, max {max(values):.2f}, {len(values)} runs)"
        )


if __name__ == "__main__":
    main()
