"""The ONNX Runtime engine: its second, single-threaded session gives the same answers; a
model it cannot load is a `ModelError`; the bytes loaded are the bytes hashed."""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from defectlens.datasets.images import read_image
from defectlens.datasets.layout import open_dataset
from defectlens.errors import ModelError
from defectlens.inference.engine import Engine


class CountingSession:
    """The real session, with its runs counted."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.runs = 0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self.runs += 1
        return self.session.run(*args, **kwargs)


def test_single_thread_runs_take_the_second_session_with_the_same_answers(
    trained_model: Path, synthetic_data: Path
) -> None:
    # The caller (the service) decides which session a part gets; both give the same answers.
    plain = Engine(trained_model, threads=2)
    split = Engine(trained_model, threads=2, single_thread_session=True)
    assert split.single_thread_session and not plain.single_thread_session
    samples = open_dataset(synthetic_data).test[:8]
    batches = [plain.prepare(read_image(sample.path))[np.newaxis] for sample in samples]
    expected = [plain.run(batch) for batch in batches]
    main, single = CountingSession(split.session), CountingSession(split._single)
    split.session, split._single = main, single  # type: ignore[assignment]

    split.run(batches[0])
    assert (main.runs, single.runs) == (1, 0)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: split.run(batches[i % 8], single_thread=True), range(24)))
    assert (main.runs, single.runs) == (1, 24)
    for index, (score, anomaly_map) in enumerate(results):
        want_score, want_map = expected[index % 8]
        np.testing.assert_allclose(score, want_score, atol=1e-5)
        np.testing.assert_allclose(anomaly_map, want_map, atol=1e-4)


def test_a_single_thread_engine_has_one_session(trained_model: Path) -> None:
    engine = Engine(trained_model, threads=1, single_thread_session=True)
    assert not engine.single_thread_session
    spec = engine.card.input
    batch = np.zeros((1, spec.height, spec.width, spec.channels), np.uint8)
    score, _ = engine.run(batch, single_thread=True)  # falls back to the one session
    assert score.shape == (1,)


def test_a_model_onnx_runtime_refuses_is_a_model_error(model_copy: Path) -> None:
    # The sha256 matches (model.json is rewritten for the new bytes) but the graph is not
    # one ONNX Runtime can load: a ModelError naming the file, not ONNX Runtime's own error.
    onnx_path = model_copy / "model.onnx"
    onnx_path.write_bytes(b"\x08\x07" + bytes(64))  # an ONNX header with no graph
    card = json.loads((model_copy / "model.json").read_text())
    card["sha256"] = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    (model_copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="ONNX Runtime cannot load"):
        Engine(model_copy, threads=1)


def test_the_bytes_loaded_are_the_bytes_hashed(
    model_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file swapped while it is read must not slip through: the engine hashes exactly the
    # bytes it hands to ONNX Runtime, not a second read of the file. Here the read returns
    # other bytes than the (intact) file on disk, as a swap between two reads would.
    onnx_path = model_copy / "model.onnx"
    original = Path.read_bytes

    def swapped(self: Path) -> bytes:
        data = original(self)
        return data[:-1] + bytes([data[-1] ^ 1]) if self == onnx_path else data

    monkeypatch.setattr(Path, "read_bytes", swapped)
    with pytest.raises(ModelError, match="sha256 does not match"):
        Engine(model_copy, threads=1)


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
