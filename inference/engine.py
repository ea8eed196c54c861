"""The ONNX Runtime engine: one model version in, one `Prediction` per image out.

It reads only the version folder (`model.onnx` checked against `model.json`'s sha256),
decodes and resizes with OpenCV as the model card says, and leaves normalisation and
channel order to the graph.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from defectlens.datasets.images import (
    decode_image,
    map_to_original,
    placement,
    read_image,
    to_model_input,
)
from defectlens.errors import InputError, ModelError
from defectlens.inference.postprocess import (
    class_thresholds,
    defects_from_map,
    detections_to_defects,
)
from defectlens.modelcard import ModelCard
from defectlens.prediction import ModelRef, Prediction, Timings, Verdict

log = logging.getLogger(__name__)
REFERENCE_FILE = "reference.png"
"""A detector's fixed reference in its version folder: the line's golden part, aligned."""


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class Engine:
    """A loaded, verified and warmed-up model version.

    Thread-safe: ONNX Runtime sessions may be run from several threads at once.
    """

    def __init__(
        self,
        model_dir: Path,
        *,
        threads: int = 2,
        warmup: bool = True,
        spin: bool = True,
        single_thread_session: bool = False,
    ) -> None:
        """`spin`: ONNX Runtime's intra-op threads busy-wait between the operators of a run
        (the lowest latency) and go to sleep when the run ends, leaving the cores to the
        rest of the process, e.g. the service's HTTP and store work; False makes them sleep
        between operators too.

        `single_thread_session`: also load a second, single-threaded session of the model,
        for `predict(..., single_thread=True)`. The caller decides which a part gets: the
        service gives it to parts inspected while others are, so parts in flight together
        take a core each instead of contending for the same ones.

        Raises `ModelError` for a folder that is missing, altered (the sha256 of the bytes
        loaded does not match model.json) or that ONNX Runtime cannot load or run."""
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise ModelError(f"{self.model_dir}: model version folder not found")
        self.card = ModelCard.read(self.model_dir / "model.json")
        onnx_path = self.model_dir / "model.onnx"
        if not onnx_path.is_file():
            raise ModelError(f"{onnx_path}: missing; a model version needs model.onnx")
        data = onnx_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.card.sha256:
            raise ModelError(
                f"{onnx_path}: sha256 does not match model.json; the file was changed or "
                "replaced after training. Use the version folder as training wrote it."
            )
        self.threads = threads
        self.spin = spin
        try:
            self.session = _session(data, threads, spin)
            self.single_thread_session = single_thread_session and threads > 1
            """Whether a second, single-threaded session was loaded (with `threads` > 1)."""
            self._single = _session(data, 1, spin=False) if self.single_thread_session else None
            self.output_names = [output.name for output in self.card.outputs]
            expected = set(self.output_names)
            present = {output.name for output in self.session.get_outputs()}
            if not expected <= present:
                raise ModelError(
                    f"{onnx_path}: outputs {sorted(present)} lack {sorted(expected - present)} "
                    "named in model.json"
                )
            self.needs_reference = "reference" in {i.name for i in self.session.get_inputs()}
            self.reference = self._fixed_reference() if self.needs_reference else None
            if warmup:
                spec = self.card.input
                blank = np.zeros((1, spec.height, spec.width, spec.channels), np.uint8)
                feeds = {"image": blank} | ({"reference": blank} if self.needs_reference else {})
                for session in (self.session, self._single):
                    if session is not None:
                        session.run(self.output_names, feeds)
        except ModelError:
            raise
        except Exception as error:  # ONNX Runtime's own errors: a bad graph, an unknown opset
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ModelError(
                f"{onnx_path}: ONNX Runtime cannot load or run it ({first_line[:300]}); "
                "export it again with this version of defectlens"
            ) from None

    def _fixed_reference(self) -> np.ndarray | None:
        """The line's golden part (`reference.png` in the version folder), as model input;
        None when the model gets each part's reference from the caller."""
        path = self.model_dir / REFERENCE_FILE
        return self.prepare(read_image(path)) if path.is_file() else None

    @property
    def ref(self) -> ModelRef:
        return ModelRef(name=self.card.name, version=self.card.version)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """A decoded image (HxW or HxWx3 RGB uint8) as the model's HxWxC input."""
        return to_model_input(image, self.card.input)

    def run(self, batch: np.ndarray, single_thread: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Raw graph call on a uint8 NHWC batch: (score [N], anomaly_map [N, H, W]).
        `single_thread` runs it on the single-threaded session, where one was loaded."""
        session = self._single if single_thread and self._single is not None else self.session
        score, anomaly_map = session.run(["score", "anomaly_map"], {"image": batch})
        return np.asarray(score), np.asarray(anomaly_map)

    def run_detector(
        self, batch: np.ndarray, references: np.ndarray | None = None, single_thread: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw detector call on a uint8 NHWC batch (and its references, for a model that
        takes them; None uses the version folder's `reference.png`): (boxes [N, K, 4] in
        model input pixels, scores [N, K], labels [N, K])."""
        feeds = {"image": batch}
        if self.needs_reference:
            if references is None:
                if self.reference is None:
                    raise InputError(
                        f"model {self.card.name} {self.card.version} compares each part with "
                        "its defect-free reference image, and none was given; give one, or "
                        f"put the line's golden part as {REFERENCE_FILE} in a new version"
                    )
                references = np.broadcast_to(self.reference, batch.shape)
            feeds["reference"] = np.ascontiguousarray(references)
        session = self._single if single_thread and self._single is not None else self.session
        boxes, scores, labels = session.run(["boxes", "scores", "labels"], feeds)
        return np.asarray(boxes), np.asarray(scores), np.asarray(labels)

    def predict(
        self,
        image: bytes | np.ndarray,
        *,
        source: str = "image",
        with_map: bool = True,
        max_pixels: int | None = None,
        single_thread: bool = False,
        reference: np.ndarray | None = None,
    ) -> Prediction:
        """Inspect one part. `image` is encoded bytes (JPG/PNG/BMP/TIFF) or a decoded array;
        `single_thread` as in `run`; `reference` the part's decoded defect-free reference,
        for a detector that takes one (else the version folder's)."""
        start = time.perf_counter()
        if isinstance(image, bytes | bytearray | memoryview):
            decoded = decode_image(bytes(image), source, max_pixels=max_pixels)
        elif isinstance(image, np.ndarray):
            decoded = image
        else:
            raise InputError(f"{source}: expected image bytes or an array, got {type(image)}")
        decode_ms = _ms(start)
        step = time.perf_counter()
        batch = self.prepare(decoded)[np.newaxis]
        references = None if reference is None else self.prepare(reference)[np.newaxis]
        preprocess_ms = _ms(step)
        step = time.perf_counter()
        if self.card.family == "detection":
            boxes, scores, labels = self.run_detector(batch, references, single_thread)
            model_ms = _ms(step)
            step = time.perf_counter()
            prediction = self._detection_prediction(
                boxes[0], scores[0], labels[0], decoded.shape[:2]
            )
        else:
            score, model_map = self.run(batch, single_thread)
            model_ms = _ms(step)
            step = time.perf_counter()
            prediction = self._anomaly_prediction(
                float(score[0]), model_map[0], decoded.shape[:2], with_map
            )
        prediction.timings_ms = Timings(
            decode=decode_ms,
            preprocess=preprocess_ms,
            model=model_ms,
            postprocess=_ms(step),
            total=_ms(start),
        )
        return prediction

    def _anomaly_prediction(
        self, score: float, model_map: np.ndarray, original_hw: tuple[int, ...], with_map: bool
    ) -> Prediction:
        threshold = self.card.threshold
        verdict: Verdict = "NG" if score >= threshold else "OK"
        full_map = None
        defects = []
        if verdict == "NG" or with_map:
            full_map = map_to_original(model_map, (original_hw[0], original_hw[1]), self.card.input)
            if verdict == "NG":
                # Resizing can shave the peak a hair below the score: cut at the lower of the
                # two so an NG part always names at least one region.
                cut = min(threshold, float(full_map.max()))
                defects = defects_from_map(full_map, cut, self.card.classes[0])
        return Prediction(
            verdict=verdict,
            score=score,
            threshold=threshold,
            defects=defects,
            anomaly_map=full_map if with_map else None,
            model=self.ref,
        )

    def _detection_prediction(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
        original_hw: tuple[int, ...],
    ) -> Prediction:
        found = detections_to_defects(
            boxes,
            scores,
            labels,
            self.card.classes,
            class_thresholds(self.card),
            placement((original_hw[0], original_hw[1]), self.card.input),
            (original_hw[0], original_hw[1]),
        )
        return Prediction(
            verdict="NG" if found.defects else "OK",
            score=found.score,
            threshold=self.card.threshold,
            defects=found.defects,
            model=self.ref,
        )


def _session(model: bytes, threads: int, spin: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if spin:
        # Spin within a run, where it saves a wake-up per operator, but not after it: a pool
        # thread spinning for the next run burns a core the rest of the process needs.
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
