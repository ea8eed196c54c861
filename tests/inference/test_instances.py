"""The status files of running services (`inference/service/instances.py`): naming, atomic
writes, staleness, and the wait for a promotion, on real files in a temporary folder."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from defectlens.inference.engine_registry import StationStatus
from defectlens.inference.service.instances import (
    InstanceStatus,
    SwapOutcome,
    instance_status,
    read_statuses,
    remove_status,
    running_instances,
    status_path,
    wait_for_model,
    write_status,
)

OLD, NEW = "parts/v1", "parts/v2"
NEW_DIR = "/ws/models/parts/v2"


def status(
    instance_id: str = "line1-box",
    serving: str | None = OLD,
    poll_s: float = 0.2,
    age_s: float = 0.0,
    failed_folder: str | None = None,
) -> InstanceStatus:
    problem = f"model {failed_folder} failed to load: altered" if failed_folder else None
    station = StationStatus("s1", serving, problem, Path(failed_folder) if failed_folder else None)
    now = datetime.now(UTC)
    started = now - timedelta(hours=1)
    return instance_status(instance_id, poll_s, started, [station], now - timedelta(seconds=age_s))


@pytest.mark.parametrize(
    ("instance_id", "file_name"),
    [
        ("line1-box", "line1-box.json"),
        ("edge 2/cam:1", "edge_2_cam_1.json"),
        ("../etc", "_etc.json"),
        ("...", "_.json"),
    ],
)
def test_status_file_names_are_safe(tmp_path: Path, instance_id: str, file_name: str) -> None:
    assert status_path(tmp_path, instance_id) == tmp_path / file_name


def test_written_status_reads_back_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    written = status(serving=NEW)
    path = write_status(folder, written)
    write_status(folder, written)  # replaced in place
    assert [p.name for p in folder.iterdir()] == [path.name] == ["line1-box.json"]
    (folder / "garbage.json").write_text("{not json")
    assert read_statuses(folder) == [written]
    assert read_statuses(tmp_path / "none") == []


@pytest.mark.parametrize(
    ("poll_s", "age_s", "stale"),
    [
        (5.0, 0.0, False),
        (5.0, 19.0, False),  # 3 polls + 5 s margin = 20 s
        (5.0, 21.0, True),
        (0.2, 5.0, False),
        (0.2, 6.0, True),
        (0.0, 19.0, False),  # not polling: refreshed every 5 s all the same
        (0.0, 21.0, True),
    ],
)
def test_a_status_not_refreshed_for_3_intervals_is_stale(
    poll_s: float, age_s: float, stale: bool
) -> None:
    assert status(poll_s=poll_s, age_s=age_s).is_stale(datetime.now(UTC)) is stale


def test_running_instances_leave_stale_ones_out(tmp_path: Path) -> None:
    write_status(tmp_path, status("fresh"))
    write_status(tmp_path, status("crashed", age_s=3600))
    running, stale = running_instances(tmp_path)
    assert [s.instance_id for s in running] == ["fresh"]
    assert [s.instance_id for s in stale] == ["crashed"]


def test_remove_status_leaves_another_process_file(tmp_path: Path) -> None:
    mine = status()
    write_status(tmp_path, mine.model_copy(update={"pid": mine.pid + 1}))  # same id, other pid
    remove_status(tmp_path, mine)
    assert read_statuses(tmp_path) != []
    write_status(tmp_path, mine)
    remove_status(tmp_path, mine)
    assert read_statuses(tmp_path) == []


def follow(
    folder: Path, instances: list[InstanceStatus], steps: list[Callable[[], None]]
) -> list[tuple[str, str, float]]:
    """`wait_for_model` with a clock that advances only in its sleep (0.2 s each); each sleep
    takes the next step, which changes the files as a service would."""
    elapsed = [0.0]
    remaining = list(steps)

    def sleep(seconds: float) -> None:
        elapsed[0] += seconds
        if remaining:
            remaining.pop(0)()

    outcomes: list[SwapOutcome] = list(
        wait_for_model(
            folder, instances, "s1", NEW, NEW_DIR, 1.0, clock=lambda: elapsed[0], sleep=sleep
        )
    )
    return [(o.instance.instance_id, o.outcome, round(o.after_s, 1)) for o in outcomes]


def test_wait_reports_each_instance_as_it_swaps_fails_or_stops(tmp_path: Path) -> None:
    ids = ["a-swaps", "b-fails", "c-stops", "d-no-poll", "e-stuck", "f-crashes"]
    instances = [status(i, poll_s=0.0 if i == "d-no-poll" else 0.2) for i in ids]
    for instance in instances:
        write_status(tmp_path, instance)

    def crash() -> None:  # its file stays, but it stopped refreshing it 10 s ago
        write_status(tmp_path, status("f-crashes", age_s=10))

    steps = [
        lambda: write_status(tmp_path, status("a-swaps", serving=NEW)),
        lambda: write_status(tmp_path, status("b-fails", serving=None, failed_folder=NEW_DIR)),
        lambda: status_path(tmp_path, "c-stops").unlink(),
        crash,
    ]
    assert follow(tmp_path, instances, steps) == [
        ("d-no-poll", "not polling", 0.0),
        ("a-swaps", "swapped", 0.2),
        ("b-fails", "failed", 0.4),
        ("c-stops", "stopped", 0.6),
        ("f-crashes", "stopped", 0.8),
        ("e-stuck", "timed out", 1.0),
    ]


def test_an_earlier_failure_of_another_model_is_not_this_promotion_failing(
    tmp_path: Path,
) -> None:
    earlier = status(serving=None, failed_folder="/ws/models/parts/v0")
    write_status(tmp_path, earlier)
    steps = [lambda: write_status(tmp_path, status(serving=NEW))]
    assert follow(tmp_path, [earlier], steps) == [("line1-box", "swapped", 0.2)]
