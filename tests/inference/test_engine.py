"""The ONNX Runtime engine under concurrent callers: parts that overlap share the cores on a
second, single-threaded session and get the same answers."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from defectlens.datasets.images import read_image
from defectlens.datasets.layout import open_dataset
from defectlens.inference.engine import Engine


class CountingSession:
    """The real session, with its runs counted."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.runs = 0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self.runs += 1
        return self.session.run(*args, **kwargs)


def test_overlapping_runs_go_to_the_single_thread_session_with_the_same_answers(
    trained_model: Path, synthetic_data: Path
) -> None:
    plain = Engine(trained_model, threads=2)
    split = Engine(trained_model, threads=2, split_overlapping=True)
    assert split.split_overlapping and not plain.split_overlapping
    samples = open_dataset(synthetic_data).test[:8]
    batches = [plain.prepare(read_image(sample.path))[np.newaxis] for sample in samples]
    expected = [plain.run(batch) for batch in batches]
    overlap = CountingSession(split._overlap_session)
    split._overlap_session = overlap  # type: ignore[assignment]

    split.run(batches[0])  # alone: the main session, all threads
    assert overlap.runs == 0
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: split.run(batches[i % 8]), range(48)))
    assert overlap.runs > 0
    for index, (score, anomaly_map) in enumerate(results):
        want_score, want_map = expected[index % 8]
        np.testing.assert_allclose(score, want_score, atol=1e-5)
        np.testing.assert_allclose(anomaly_map, want_map, atol=1e-4)


def test_a_run_while_another_part_is_in_progress_takes_the_single_thread_session(
    trained_model: Path, synthetic_data: Path
) -> None:
    split = Engine(trained_model, threads=2, split_overlapping=True)
    sample = open_dataset(synthetic_data).test[0]
    batch = split.prepare(read_image(sample.path))[np.newaxis]
    main, overlap = CountingSession(split.session), CountingSession(split._overlap_session)
    split.session, split._overlap_session = main, overlap  # type: ignore[assignment]

    with split.inspecting():  # one part alone, between its steps: all threads
        split.run(batch)
    assert (main.runs, overlap.runs) == (1, 0)
    with split.inspecting(), split.inspecting():  # another part is decoding or storing
        split.run(batch)
    assert (main.runs, overlap.runs) == (1, 1)
    with split.inspecting():  # the other part has finished: all threads again
        split.run(batch)
    assert (main.runs, overlap.runs) == (2, 1)
    with pytest.raises(RuntimeError), split.inspecting():  # a failed part leaves the count
        raise RuntimeError("decode failed")
    split.run(batch)
    assert (main.runs, overlap.runs) == (3, 1)


def test_a_single_thread_engine_has_nothing_to_split(trained_model: Path) -> None:
    engine = Engine(trained_model, threads=1, split_overlapping=True)
    assert not engine.split_overlapping
    assert engine._overlap_session is engine.session


def test_spinning_threads_go_to_sleep_when_a_run_ends(trained_model: Path) -> None:
    # ONNX Runtime's pool threads spin between the operators of a run; left to its default,
    # a pool thread then spins on for tens of milliseconds after the run, burning a core the
    # service's HTTP and store work need. The engine stops them at the end of each run.
    engine = Engine(trained_model, threads=2, spin=True)
    spec = engine.card.input
    batch = np.zeros((1, spec.height, spec.width, spec.channels), np.uint8)
    for _ in range(20):
        engine.run(batch)
    before = time.process_time()
    time.sleep(0.1)
    idle_cpu_ms = (time.process_time() - before) * 1000
    assert idle_cpu_ms < 10, f"{idle_cpu_ms:.1f} ms of CPU in 100 ms without a run"
