"""The detector network: peaks to boxes against a hand-worked case, in PyTorch and in the
exported ONNX graph; the whole network's export agrees with PyTorch (parity), batched and
one by one; a changed graph fails the parity check."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from defectlens.models.detector import DefectDetector, decode
from defectlens.train.detector_export import check_detector_parity, export_detector
from defectlens.train.export import ParityError


def hand_case() -> tuple[torch.Tensor, torch.Tensor]:
    """A 16x16 input (4x4 grid at stride 4), two classes. Class 1 peaks at row 2, column 1
    (logit 2); its neighbour at column 2 (logit 1) is no peak. Class 0 peaks at row 0,
    column 3 (logit 0). Everything else is -10."""
    heat = torch.full((1, 2, 4, 4), -10.0)
    heat[0, 1, 2, 1] = 2.0
    heat[0, 1, 2, 2] = 1.0
    heat[0, 0, 0, 3] = 0.0
    box = torch.zeros(1, 4, 4, 4)
    # class 1's peak: centre offset (0.5, 0.25) cells, 2 x 1 cells (8 x 4 px)
    box[0, :, 2, 1] = torch.tensor([0.5, 0.25, math.log(2.0), 0.0])
    # class 0's peak: no offset, 1.5 x 1.5 cells (6 x 6 px)
    box[0, :, 0, 3] = torch.tensor([0.0, 0.0, math.log(1.5), math.log(1.5)])
    return heat, box


EXPECTED_BOXES = [
    [2.0, 7.0, 10.0, 11.0],  # centre (1.5, 2.25) cells = (6, 9) px, 8 x 4 px
    [9.0, 0.0, 15.0, 3.0],  # centre (12, 0) px, 6 x 6 px, clipped at the top
]
EXPECTED_SCORES = [1 / (1 + math.exp(-2.0)), 0.5]


def test_decoding_by_hand() -> None:
    boxes, scores, labels = decode(*hand_case(), top_k=3, input_hw=(16, 16))
    assert labels[0, :2].tolist() == [1, 0]
    assert scores[0, :2].tolist() == pytest.approx(EXPECTED_SCORES, abs=1e-6)
    np.testing.assert_allclose(np.asarray(boxes)[0, :2], EXPECTED_BOXES, atol=1e-5)
    # the neighbour of the class-1 peak (sigmoid(1) = 0.73) is suppressed, not third
    assert float(scores[0, 2]) < 1e-3


class Decoding(nn.Module):
    def forward(self, heat: torch.Tensor, box: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return decode(heat, box, 3, (16, 16))


def test_decoding_inside_the_onnx_graph_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "decode.onnx"
    heat, box = hand_case()
    torch.onnx.export(Decoding(), (heat, box), str(path), input_names=["heat", "box"], dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores, labels = session.run(None, {"heat": heat.numpy(), "box": box.numpy()})
    assert labels[0, :2].tolist() == [1, 0]
    assert scores[0, :2].tolist() == pytest.approx(EXPECTED_SCORES, abs=1e-6)
    np.testing.assert_allclose(np.asarray(boxes)[0, :2], EXPECTED_BOXES, atol=1e-5)


@pytest.fixture(scope="module")
def network() -> DefectDetector:
    torch.manual_seed(0)
    net = DefectDetector(3, reference=True, width=8, top_k=10, pretrained=False).eval()
    with torch.no_grad():  # a peakier heat map than the prior's, so boxes are compared
        net.heat.bias.fill_(0.0)  # type: ignore[union-attr]
    return net


def test_the_export_agrees_with_pytorch(network: DefectDetector, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    export_detector(network, path, (64, 64))
    rng = np.random.default_rng(0)
    images = (rng.random((3, 64, 64, 1)) > 0.5).astype(np.uint8) * 255
    references = (rng.random((3, 64, 64, 1)) > 0.5).astype(np.uint8) * 255
    parity = check_detector_parity(network, path, images, references)
    assert parity["max_abs_score"] < 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", "reference"]
    boxes, scores, labels = session.run(None, {"image": images, "reference": references})
    assert boxes.shape == (3, 10, 4) and scores.shape == (3, 10) and labels.shape == (3, 10)
    assert labels.dtype == np.int64 and (np.diff(scores, axis=1) <= 0).all()


def test_a_graph_that_computes_something_else_fails_parity(
    network: DefectDetector, tmp_path: Path
) -> None:
    path = tmp_path / "model.onnx"
    export_detector(network, path, (64, 64))
    changed = DefectDetector(3, reference=True, width=8, top_k=10, pretrained=False).eval()
    with torch.no_grad():
        changed.heat.bias.fill_(3.0)  # type: ignore[union-attr]
    images = np.full((1, 64, 64, 1), 255, np.uint8)
    with pytest.raises(
        ParityError, match=r"ONNX Runtime (differs from|finds other classes than) PyTorch"
    ):
        check_detector_parity(changed, path, images, images)
