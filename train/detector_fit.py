"""Fitting the defect detector, in the shape of torchvision's detection reference script:
`train_one_epoch`, `validate`, a checkpoint every validation, early stopping on the
validation mAP@0.5, resumable after an interrupt.

Training images are cut into class-balanced random crops (a class drawn uniformly, then one
of its boxes, then a crop that holds it), augmented by an albumentations preset applied to
part, reference and boxes together. Targets are CenterNet's: a Gaussian peak per box at its
centre on the stride-4 grid, the centre's sub-cell offset and the box's log size.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from tqdm import tqdm

from defectlens.datasets.detection import DetectionSample
from defectlens.datasets.images import read_image
from defectlens.errors import DataError
from defectlens.models.detector import STRIDE, DefectDetector
from defectlens.train.detector_metrics import Detections, coco_map
from defectlens.train.detector_recipe import DetectorRecipe

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
MIN_SIGMA = 0.8
"""Smallest Gaussian spread of a target peak, in grid cells (tiny defects still get a few
cells of positive neighbourhood)."""


@dataclass
class Pair:
    """A decoded part, its reference (or None) and its boxes."""

    image: npt.NDArray[np.uint8]
    reference: npt.NDArray[np.uint8] | None
    boxes: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]


def gray(path: Path) -> npt.NDArray[np.uint8]:
    image = read_image(path)
    if image.ndim == 3:
        image = np.asarray(image.mean(axis=2), np.uint8)
    return image


def load_pair(
    sample: DetectionSample, use_reference: bool, hw: tuple[int, int] | None = None
) -> Pair:
    """A sample decoded (gray), stretched to `hw` (boxes with it) when it is another size."""
    image = gray(sample.image)
    reference = None
    if use_reference:
        assert sample.reference is not None
        reference = gray(sample.reference)
        if reference.shape != image.shape:
            raise DataError(
                f"{sample.reference}: {reference.shape[1]}x{reference.shape[0]} px, the part "
                f"{sample.image} is {image.shape[1]}x{image.shape[0]}; a reference must be "
                "aligned to its part"
            )
    boxes = sample.boxes
    if hw is not None and image.shape != hw:
        scale = np.array([hw[1] / image.shape[1], hw[0] / image.shape[0]] * 2, np.float32)
        boxes = boxes * scale
        image = np.asarray(cv2.resize(image, (hw[1], hw[0]), interpolation=cv2.INTER_AREA))
        if reference is not None:
            reference = np.asarray(
                cv2.resize(reference, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
            )
    return Pair(image, reference, boxes, sample.labels)


def augment_preset(recipe: DetectorRecipe) -> A.Compose:
    """The training preset (flips, quarter turns) for part, reference and boxes together."""
    steps: list[Any] = []
    if recipe.augment.flips:
        steps += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    if recipe.augment.rot90:
        steps.append(A.RandomRotate90(p=0.5))
    return A.Compose(
        steps,
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=0.3),
        additional_targets={"reference": "image"},
        seed=recipe.seed,
    )


class CropSampler:
    """Class-balanced crops: each crop holds a box of a class drawn uniformly among the
    classes present (or, for `background_crops` of them, lies anywhere)."""

    def __init__(
        self, pairs: Sequence[Pair], classes: int, crop: int, background: float, seed: int
    ) -> None:
        self.pairs = pairs
        self.crop = crop
        self.background = background
        self.rng = np.random.default_rng(seed)
        self.by_class: list[list[tuple[int, int]]] = [[] for _ in range(classes)]
        for p, pair in enumerate(pairs):
            for b, label in enumerate(pair.labels):
                self.by_class[int(label)].append((p, b))
        self.present = [c for c in range(classes) if self.by_class[c]]

    def state(self) -> dict[str, Any]:
        return dict(self.rng.bit_generator.state)

    def restore(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state

    def draw(self) -> tuple[Pair, tuple[int, int]]:
        """A pair and the top-left corner of a crop in it."""
        rng = self.rng
        if not self.present or rng.random() < self.background:
            pair = self.pairs[int(rng.integers(len(self.pairs)))]
            h, w = pair.image.shape
            return pair, (
                int(rng.integers(max(1, h - self.crop + 1))),
                int(rng.integers(max(1, w - self.crop + 1))),
            )
        options = self.by_class[self.present[int(rng.integers(len(self.present)))]]
        p, b = options[int(rng.integers(len(options)))]
        pair = self.pairs[p]
        x0, y0, x1, y1 = pair.boxes[b]
        h, w = pair.image.shape
        top = _corner(rng, float(y0), float(y1), self.crop, h)
        left = _corner(rng, float(x0), float(x1), self.crop, w)
        return pair, (top, left)


def _corner(rng: np.random.Generator, low: float, high: float, crop: int, side: int) -> int:
    """A crop start that keeps [low, high) inside the crop (as far as it fits) and the
    crop inside the image."""
    first = max(0, math.ceil(high) - crop)
    last = min(int(low), side - crop)
    if last < first:
        first = last = max(0, min(int(low), side - crop))
    return int(rng.integers(first, last + 1))


def cut(pair: Pair, corner: tuple[int, int], crop: int) -> Pair:
    """The crop of a pair; boxes clipped to it, those left with under 30% of their area
    (or no area) dropped."""
    top, left = corner
    window = (slice(top, top + crop), slice(left, left + crop))
    boxes = pair.boxes - np.array([left, top, left, top], np.float32)
    clipped = boxes.clip(0, crop)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1]) >= 0.3 * area
    kept &= (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return Pair(
        np.ascontiguousarray(pair.image[window]),
        None if pair.reference is None else np.ascontiguousarray(pair.reference[window]),
        clipped[kept],
        pair.labels[kept],
    )


def targets(
    boxes: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], classes: int, hw: tuple[int, int]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """CenterNet targets on the stride-4 grid of an input of `hw` pixels: (heat [C, h, w]
    with an elliptic Gaussian per box, exactly 1 at its centre cell; box regression
    [4, h, w]: centre offset in cells, log width and height in cells; mask [h, w], 1 at
    centre cells)."""
    h, w = hw[0] // STRIDE, hw[1] // STRIDE
    heat = np.zeros((classes, h, w), np.float32)
    regression = np.zeros((4, h, w), np.float32)
    mask = np.zeros((h, w), np.float32)
    ys, xs = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    for (x0, y0, x1, y1), label in zip(boxes, labels, strict=True):
        cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
        bw, bh = max((x1 - x0) / STRIDE, 0.25), max((y1 - y0) / STRIDE, 0.25)
        col, row = min(int(cx), w - 1), min(int(cy), h - 1)
        sx, sy = max(bw / 6, MIN_SIGMA), max(bh / 6, MIN_SIGMA)
        peak = np.exp(-((xs - col) ** 2) / (2 * sx * sx) - ((ys - row) ** 2) / (2 * sy * sy))
        np.maximum(heat[label], peak, out=heat[label])
        heat[label, row, col] = 1.0
        regression[:, row, col] = (cx - col, cy - row, math.log(bw), math.log(bh))
        mask[row, col] = 1.0
    return heat, regression, mask


def focal_loss(logits: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, per object."""
    positive = heat.eq(1).to(logits.dtype)
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = log_p.exp()
    pos = -(log_p * (1 - p) ** 2 * positive).sum()
    neg = -(log_not_p * p**2 * (1 - heat) ** 4 * (1 - positive)).sum()
    return (pos + neg) / positive.sum().clamp(min=1)


def box_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 on offset and log size at the centre cells."""
    weight = mask.unsqueeze(1)
    return (F.l1_loss(prediction, target, reduction="none") * weight).sum() / (
        weight.sum().clamp(min=1) * 4
    )


@dataclass
class Progress:
    """What a checkpoint carries besides the weights, and what the report tells."""

    epoch: int = 0
    step: int = 0
    elapsed_s: float = 0.0
    best_map50: float = -1.0
    best_epoch: int = 0
    since_best: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    stopped: str = ""


def learning_rate(recipe: DetectorRecipe, fraction: float) -> float:
    """Linear warm-up, then cosine to zero over the run's `fraction` done (0..1)."""
    schedule = recipe.schedule
    if fraction < schedule.warmup:
        return schedule.learning_rate * (0.1 + 0.9 * fraction / schedule.warmup)
    rest = (fraction - schedule.warmup) / (1 - schedule.warmup)
    return schedule.learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, rest)))


def budget_clock(recipe: DetectorRecipe) -> Callable[[], float]:
    """Seconds of the budget's clock: the wall clock, or the process's CPU time divided by
    its threads (minutes of `threads` cores, the same on a busy shared machine)."""
    if recipe.schedule.clock == "wall":
        return time.perf_counter
    threads = recipe.threads
    return lambda: time.process_time() / threads


def run_fraction(recipe: DetectorRecipe, progress: Progress, steps_per_epoch: int) -> float:
    """How much of the run is done: epochs or minutes, whichever runs out first."""
    by_steps = progress.step / (recipe.schedule.epochs * steps_per_epoch)
    by_time = progress.elapsed_s / (recipe.schedule.max_minutes * 60)
    return min(1.0, max(by_steps, by_time))


def train_one_epoch(
    network: DefectDetector,
    optimizer: torch.optim.Optimizer,
    sampler: CropSampler,
    preset: A.Compose,
    recipe: DetectorRecipe,
    progress: Progress,
    steps: int,
) -> float:
    network.train()
    crop, classes = recipe.crop, network.classes
    clock = budget_clock(recipe)
    started = clock() - progress.elapsed_s
    total = 0.0
    bar = tqdm(range(steps), desc=f"epoch {progress.epoch + 1}", leave=False, disable=None)
    for _ in bar:
        fraction = run_fraction(recipe, progress, steps)
        if fraction >= 1.0:
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(recipe, fraction)
        images, references, heats, regressions, masks = [], [], [], [], []
        for _ in range(recipe.batch_size):
            part = cut(*sampler.draw(), crop)
            extra = {} if part.reference is None else {"reference": part.reference}
            out = preset(image=part.image, bboxes=part.boxes, labels=part.labels, **extra)
            images.append(out["image"])
            if part.reference is not None:
                references.append(out["reference"])
            heat, regression, mask = targets(
                np.asarray(out["bboxes"], np.float32).reshape(-1, 4),
                np.asarray(out["labels"], np.int64).reshape(-1),
                classes,
                (crop, crop),
            )
            heats.append(heat)
            regressions.append(regression)
            masks.append(mask)
        image = torch.from_numpy(np.stack(images)[..., None])
        reference = torch.from_numpy(np.stack(references)[..., None]) if references else None
        heat_logits, box = network.maps(network.planes(image, reference))
        loss = focal_loss(heat_logits, torch.from_numpy(np.stack(heats))) + box_loss(
            box, torch.from_numpy(np.stack(regressions)), torch.from_numpy(np.stack(masks))
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 10.0)
        optimizer.step()
        progress.step += 1
        progress.elapsed_s = clock() - started
        total += float(loss.detach())
        bar.set_postfix(loss=f"{total / progress.step:.3f}", refresh=False)
    return total / max(1, steps)


@torch.inference_mode()
def detect(network: DefectDetector, pairs: Sequence[Pair], batch_size: int = 4) -> list[Detections]:
    """The network's decoded detections on whole images (as the exported graph gives them)."""
    network.eval()
    found = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        image = torch.from_numpy(np.stack([p.image for p in chunk])[..., None])
        reference = (
            torch.from_numpy(np.stack([p.reference for p in chunk])[..., None])  # type: ignore[misc]
            if network.reference
            else None
        )
        boxes, scores, labels = network(image, reference)
        for i in range(len(chunk)):
            found.append(Detections(boxes[i].numpy(), scores[i].numpy(), labels[i].numpy()))
    return found


def validate(network: DefectDetector, pairs: Sequence[Pair], classes: int) -> dict[str, float]:
    found = detect(network, pairs)
    truth = [Detections.truth(p.boxes, p.labels) for p in pairs]
    return coco_map(truth, found, classes)


def fit_detector(
    network: DefectDetector,
    train: Sequence[Pair],
    validation: Sequence[Pair],
    recipe: DetectorRecipe,
    checkpoint_dir: Path,
    *,
    resume: bool = False,
    say: Callable[[str], None] = log.info,
) -> Progress:
    """Train until the epochs or minutes run out or the validation mAP@0.5 stops rising;
    leaves the best validated weights in `network`. A checkpoint (weights, best weights,
    optimiser, sampler state, progress, recipe) is written to `checkpoint_dir` after each
    validation; `resume` continues from it."""
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    optimizer = torch.optim.AdamW(
        network.parameters(),
        lr=recipe.schedule.learning_rate,
        weight_decay=recipe.schedule.weight_decay,
    )
    sampler = CropSampler(
        train, network.classes, recipe.crop, recipe.augment.background_crops, recipe.seed
    )
    preset = augment_preset(recipe)
    progress = Progress()
    best_state = copy.deepcopy(network.state_dict())
    path = checkpoint_dir / CHECKPOINT
    if resume and path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=False)
        if saved["recipe"] != recipe.model_dump(mode="json"):
            raise DataError(
                f"{path}: the checkpoint was written by another recipe; train without "
                "--resume, or resume with the recipe it was written by"
            )
        network.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        sampler.restore(saved["sampler"])
        best_state = saved["best_model"]
        progress = Progress(**saved["progress"])
        say(f"resumed from {path} at epoch {progress.epoch}, {progress.elapsed_s / 60:.1f} min")
    steps = max(1, math.ceil(len(train) * recipe.crops_per_image / recipe.batch_size))
    while not progress.stopped:
        loss = train_one_epoch(network, optimizer, sampler, preset, recipe, progress, steps)
        progress.epoch += 1
        done = run_fraction(recipe, progress, steps) >= 1.0
        if progress.epoch % recipe.schedule.validate_every == 0 or done:
            clock = budget_clock(recipe)
            began = clock()
            figures = validate(network, validation, network.classes)
            progress.elapsed_s += clock() - began
            progress.history.append(
                {"epoch": progress.epoch, "minutes": progress.elapsed_s / 60, "loss": loss}
                | figures
            )
            say(
                f"epoch {progress.epoch}: loss {loss:.3f}, validation mAP@0.5 "
                f"{figures['map50']:.4f}, {progress.elapsed_s / 60:.1f} min"
            )
            if figures["map50"] > progress.best_map50:
                progress.best_map50, progress.best_epoch = figures["map50"], progress.epoch
                progress.since_best = 0
                best_state = copy.deepcopy(network.state_dict())
            else:
                progress.since_best += 1
                if progress.since_best >= recipe.schedule.patience:
                    progress.stopped = (
                        f"no better validation mAP@0.5 for {progress.since_best} validations"
                    )
        if done and not progress.stopped:
            progress.stopped = (
                "time budget spent"
                if progress.elapsed_s >= recipe.schedule.max_minutes * 60
                else "epochs done"
            )
        _save_checkpoint(path, network, best_state, optimizer, sampler, progress, recipe)
    network.load_state_dict(best_state)
    say(
        f"training stopped ({progress.stopped}) after {progress.epoch} epochs, "
        f"{progress.elapsed_s / 60:.1f} min; best validation mAP@0.5 {progress.best_map50:.4f} "
        f"at epoch {progress.best_epoch}"
    )
    return progress


def _save_checkpoint(
    path: Path,
    network: DefectDetector,
    best_state: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    sampler: CropSampler,
    progress: Progress,
    recipe: DetectorRecipe,
) -> None:
    """Written beside and renamed over the last one: an interrupt never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(
        {
            "model": network.state_dict(),
            "best_model": best_state,
            "optimizer": optimizer.state_dict(),
            "sampler": sampler.state(),
            "progress": progress.__dict__,
            "recipe": recipe.model_dump(mode="json"),
        },
        partial,
    )
    partial.replace(path)
