"""The detector's ONNX export, decoding inside the graph (sigmoid, 3x3 max-pool peaks,
top-K, box assembly), and its PyTorch-vs-ONNX Runtime parity check."""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from defectlens.models.backbone import fix_same_padding
from defectlens.models.detector import DefectDetector
from defectlens.train.export import OPSET, ParityError, drop_empty_trailing_inputs

OUTPUTS = ("boxes", "scores", "labels")
SCORE_TOLERANCE = 1e-3
BOX_TOLERANCE = 0.5
"""Pixels: boxes of the same peak may differ by rounding, never by a cell."""
PARITY_MIN_SCORE = 0.05
"""Boxes are compared where PyTorch scores a peak at least this (below it, near-equal
background peaks may swap places in the top-K)."""


def input_names(network: DefectDetector) -> list[str]:
    return ["image", "reference"] if network.reference else ["image"]


def export_detector(network: DefectDetector, path: Path, input_hw: tuple[int, int]) -> None:
    """Write `network` for images of `input_hw` as ONNX, checked by onnx's checker."""
    shipped = copy.deepcopy(network).eval()
    fix_same_padding(shipped.backbone, input_hw)
    example = torch.zeros(1, *input_hw, network.channels, dtype=torch.uint8)
    names = input_names(network)
    args = (example, example.clone()) if network.reference else (example,)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            shipped,
            args,
            buffer,  # type: ignore[arg-type]  # a file-like object works; the stub lists paths
            input_names=names,
            output_names=list(OUTPUTS),
            dynamic_axes={name: {0: "N"} for name in [*names, *OUTPUTS]},
            opset_version=OPSET,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    drop_empty_trailing_inputs(model.graph)
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)


def check_detector_parity(
    network: DefectDetector, path: Path, images: np.ndarray, references: np.ndarray | None
) -> dict[str, float]:
    """Run the same uint8 NHWC batch through PyTorch and ONNX Runtime (batched and one by
    one); raise `ParityError` when scores, labels or boxes of the peaks differ."""
    if len(images) == 0:
        raise ParityError("parity check needs at least one image")
    feeds: dict[str, np.ndarray] = {"image": images}
    if network.reference:
        if references is None:
            raise ParityError("this detector takes references; the parity check needs them")
        feeds["reference"] = references
    with torch.inference_mode():
        torch_out = network.eval()(
            *(torch.from_numpy(np.ascontiguousarray(feeds[name])) for name in feeds)
        )
    ref_boxes, ref_scores, ref_labels = (t.numpy() for t in torch_out)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    runs = [session.run(list(OUTPUTS), feeds)]
    singles = [
        session.run(list(OUTPUTS), {k: v[i : i + 1] for k, v in feeds.items()})
        for i in range(len(images))
    ]
    runs.append([np.concatenate([s[j] for s in singles]) for j in range(3)])
    worst_score = worst_box = 0.0
    strong = ref_scores >= PARITY_MIN_SCORE
    for boxes, scores, labels in runs:
        worst_score = max(worst_score, float(np.abs(scores - ref_scores).max()))
        if (labels[strong] != ref_labels[strong]).any():
            raise ParityError(f"{path}: ONNX Runtime finds other classes than PyTorch")
        if strong.any():
            worst_box = max(worst_box, float(np.abs(boxes[strong] - ref_boxes[strong]).max()))
    if not np.isfinite(worst_score) or worst_score > SCORE_TOLERANCE or worst_box > BOX_TOLERANCE:
        raise ParityError(
            f"{path}: ONNX Runtime differs from PyTorch by {worst_score:.2e} in score "
            f"(tolerance {SCORE_TOLERANCE:.0e}) and {worst_box:.2f} px in box "
            f"(tolerance {BOX_TOLERANCE}); the export is not trustworthy"
        )
    return {"max_abs_score": worst_score, "max_abs_box_px": worst_box, "images": float(len(images))}
