"""Benchmark the defect detector on DeepPCB against a widely used detector (Ultralytics
YOLOv8n, built from its yaml, no downloaded weights), same split, same machine, same
training budget; prints one table with both.

The split is the detector recipe's: a seeded 20% of trainval held out for the figures, 10%
of the rest for validation (early stopping, per-class thresholds), the rest fitted. Both
models get their per-class thresholds the same way (best F1 on the validation images).
The budget is `--minutes` of the recipe's clock (`--clock cpu`: the process's CPU time
divided by its 2 threads, so a busy shared machine gives both the same amount of training).

    OMP_WAIT_POLICY=PASSIVE nice -n 10 .venv/bin/python scripts/benchmark_detector.py \
        --data ../shared/datasets/deeppcb --minutes 12 --clock cpu
    # one side at a time (both write <out>/<side>.json; the table reads whichever exist):
    ... --only ours        ... --only baseline        ... --only table
    # an interrupted baseline run: evaluate its last checkpoint, saying how far it got
    ... --only baseline-eval --weights OUT/yolo-runs/yolov8n/weights/last.pt --spent 2.5
    # the smoke version (synthetic boards, seconds; no baseline):
    .venv/bin/python scripts/benchmark_detector.py --smoke --out /tmp/smoke
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from defectlens.datasets.detection import DetectionSample, open_detection_dataset
from defectlens.datasets.images import read_image
from defectlens.datasets.synthetic_pcb import write_pcb_dataset
from defectlens.inference.engine import Engine
from defectlens.modelcard import ModelCard
from defectlens.train import detector_metrics as dm
from defectlens.train.detector_pipeline import plan, train_detector
from defectlens.train.detector_recipe import DetectorRecipe
from defectlens.train.recipe import load_any_recipe

ROOT = Path(__file__).resolve().parents[1]
LATENCY_RUNS = 30


def onnx_latency_ms(session_path: Path, feeds: dict[str, np.ndarray], threads: int) -> float:
    """Median ms of one ONNX Runtime run (graph only) at `threads` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(session_path), options, providers=["CPUExecutionProvider"])
    for _ in range(3):
        session.run(None, feeds)
    times = []
    for _ in range(LATENCY_RUNS):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def engine_latency_ms(version: Path, sample: DetectionSample, threads: int) -> float:
    """Median ms of `Engine.predict` on a decoded full-size image (resize, graph, decoding
    of the defects), as the service runs it."""
    engine = Engine(version, threads=threads)
    image = read_image(sample.image)
    reference = read_image(sample.reference) if sample.reference is not None else None
    for _ in range(3):
        engine.predict(image, reference=reference)
    times = []
    for _ in range(LATENCY_RUNS):
        start = time.perf_counter()
        engine.predict(image, reference=reference)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def figures(
    classes: tuple[str, ...],
    truth: list[dm.Detections],
    found: list[dm.Detections],
    thresholds: list[float],
) -> dict[str, Any]:
    kept = [d.above(thresholds) for d in found]
    coco = dm.coco_map(truth, found, len(classes))
    deeppcb = dm.deeppcb_protocol(truth, kept)
    per_class = dm.per_class(truth, kept, classes)
    return {
        "map50": coco["map50"],
        "map50_95": coco["map50_95"],
        "deeppcb_fscore": deeppcb["f1"],
        "deeppcb_precision": deeppcb["precision"],
        "deeppcb_recall": deeppcb["recall"],
        "f1_per_class": {name: per_class[name]["f1"] for name in classes},
        "thresholds": dict(zip(classes, thresholds, strict=True)),
    }


def run_ours(recipe: DetectorRecipe, data: Path, out: Path, threads: int) -> dict[str, Any]:
    started = time.perf_counter()
    cpu_started = time.process_time()
    version = train_detector(recipe, data, out / "models", say=lambda line: print(line, flush=True))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    card = ModelCard.read(version / "model.json")
    metrics = card.metrics
    _, _, evaluation = plan(open_detection_dataset(data), recipe)
    first = evaluation[0]
    graph_feeds = {"image": np.zeros((1, *recipe.image_size, 1), np.uint8)}
    with_template = card.data.get("reference") != "none"
    if with_template:
        graph_feeds["reference"] = graph_feeds["image"]
    return {
        "name": "defectlens detector (CenterNet-style"
        + (", template input)" if with_template else ", no template)"),
        "version": str(version),
        "map50": metrics["map50"],
        "map50_95": metrics["map50_95"],
        "deeppcb_fscore": metrics["f1"],
        "deeppcb_precision": metrics["deeppcb_precision"],
        "deeppcb_recall": metrics["deeppcb_recall"],
        "f1_per_class": {name: row["f1"] for name, row in metrics["per_type"].items()},
        "thresholds": card.class_thresholds,
        "train_budget_minutes": metrics["training"]["train_minutes"],
        "train_wall_minutes": round(wall / 60, 2),
        "train_cpu_minutes_per_thread": round(cpu / threads / 60, 2),
        "epochs": metrics["training"]["epochs"],
        "input": f"{recipe.image_size[1]}x{recipe.image_size[0]} "
        + ("(part + template)" if with_template else "(part only)"),
        "onnx_graph_ms": onnx_latency_ms(version / "model.onnx", graph_feeds, threads),
        "engine_ms_per_640_image": engine_latency_ms(version, first, threads),
    }


def yolo_dataset(
    folder: Path, splits: dict[str, list[DetectionSample]], classes: tuple[str, ...]
) -> Path:
    """The split in Ultralytics' layout: images (links to the tested images, never copies)
    and labels (class cx cy w h, normalised), and its data.yaml."""
    for split, samples in splits.items():
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
        for sample in samples:
            height, width = read_image(sample.image).shape[:2]
            link = folder / "images" / split / sample.image.name
            if not link.exists():
                link.symlink_to(sample.image.resolve())
            lines = []
            for (x0, y0, x1, y1), label in zip(sample.boxes, sample.labels, strict=True):
                lines.append(
                    f"{int(label)} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
                    f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}"
                )
            (folder / "labels" / split / f"{link.stem}.txt").write_text("\n".join(lines) + "\n")
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(classes))
    config = folder / "data.yaml"
    config.write_text(f"path: {folder}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    return config


def yolo_detections(model: Any, samples: list[DetectionSample], imgsz: int) -> list[dm.Detections]:
    found = []
    for sample in samples:
        result = model.predict(
            str(sample.image), imgsz=imgsz, conf=0.001, iou=0.6, max_det=100, verbose=False
        )[0]
        boxes = result.boxes
        found.append(
            dm.Detections(
                boxes.xyxy.numpy().astype(np.float32),
                boxes.conf.numpy().astype(np.float32),
                boxes.cls.numpy().astype(np.int64),
            )
        )
    return found


def run_yolo(
    recipe: DetectorRecipe, data: Path, out: Path, threads: int, minutes: float, clock: str
) -> dict[str, Any]:
    os.environ["YOLO_OFFLINE"] = "1"
    import torch
    from ultralytics import YOLO, settings

    settings.update({"sync": False, "runs_dir": str(out / "yolo-runs")})
    torch.set_num_threads(threads)
    dataset = open_detection_dataset(data)
    fit, validation, _ = plan(dataset, recipe)
    config = yolo_dataset(out / "yolo-data", {"train": fit, "val": validation}, dataset.classes)
    imgsz = recipe.image_size[0]
    budget_s = minutes * 60

    def used() -> float:
        return time.process_time() / threads if clock == "cpu" else time.perf_counter() - wall_start

    def stop_at_budget(trainer: Any) -> None:
        if used() - start >= budget_s:
            trainer.stop = True

    def plan_epochs(trainer: Any) -> None:
        # Ultralytics' own `time=` mode, on the budget's clock: the epochs that fit, so its
        # learning-rate schedule ends with the budget.
        done = trainer.epoch + 1
        fit_epochs = max(done, math.ceil(budget_s / max((used() - start) / done, 1e-6)))
        trainer.epochs = trainer.args.epochs = fit_epochs
        trainer._setup_scheduler()
        trainer.scheduler.last_epoch = trainer.epoch

    model = YOLO("yolov8n.yaml")
    model.add_callback("on_train_batch_end", stop_at_budget)
    model.add_callback("on_fit_epoch_end", plan_epochs)
    wall_start = time.perf_counter()
    cpu_started = time.process_time()
    start = used()
    model.train(
        data=str(config),
        epochs=30,
        imgsz=imgsz,
        batch=16,
        workers=0,
        device="cpu",
        amp=False,
        plots=False,
        pretrained=False,
        project=str(out / "yolo-runs"),
        name="yolov8n",
        exist_ok=True,
        seed=recipe.seed,
        patience=recipe.schedule.patience,
        verbose=False,
    )
    wall = time.perf_counter() - wall_start
    cpu = time.process_time() - cpu_started
    result = evaluate_yolo(out / "yolo-runs" / "yolov8n" / "weights" / "best.pt", recipe, data)
    result |= {
        "train_budget_minutes": round(min(used() - start, budget_s) / 60, 2),
        "train_wall_minutes": round(wall / 60, 2),
        "train_cpu_minutes_per_thread": round(cpu / threads / 60, 2),
        "epochs": model.trainer.epoch + 1,
    }
    return result


def evaluate_yolo(weights: Path, recipe: DetectorRecipe, data: Path) -> dict[str, Any]:
    """A trained YOLOv8n on the held-out images: thresholds chosen on the validation images
    as ours are, the same figures, and its ONNX graph's latency."""
    os.environ["YOLO_OFFLINE"] = "1"
    from ultralytics import YOLO

    dataset = open_detection_dataset(data)
    _, validation, evaluation = plan(dataset, recipe)
    imgsz = recipe.image_size[0]
    best = YOLO(str(weights))
    validation_found = yolo_detections(best, validation, imgsz)
    validation_truth = [dm.Detections.truth(s.boxes, s.labels) for s in validation]
    thresholds = dm.best_f1_thresholds(
        validation_truth, validation_found, len(dataset.classes), recipe.min_threshold
    )
    truth = [dm.Detections.truth(s.boxes, s.labels) for s in evaluation]
    result = figures(dataset.classes, truth, yolo_detections(best, evaluation, imgsz), thresholds)
    result |= {
        "name": "Ultralytics YOLOv8n (from yaml, no pretrained weights)",
        "weights": str(weights),
        "input": f"{imgsz}x{imgsz} (part only)",
    }
    try:
        exported = Path(best.export(format="onnx", imgsz=imgsz, simplify=False, dynamic=False))
        feeds = {"images": np.zeros((1, 3, imgsz, imgsz), np.float32)}
        result["onnx_graph_ms"] = onnx_latency_ms(exported, feeds, recipe.threads)
        result["onnx_note"] = "graph without NMS (Ultralytics runs NMS in Python)"
    except Exception as error:  # the export needs packages the machine may lack
        result["onnx_graph_ms"] = None
        result["onnx_note"] = f"ONNX export failed: {str(error).splitlines()[0][:200]}"
    return result


def table(sides: dict[str, dict[str, Any]], command: str) -> list[str]:
    names = list(sides)
    rows: list[tuple[str, ...]] = [("", *[sides[n]["name"].split(" (")[0] for n in names])]

    def number(value: Any, digits: int = 4) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    def row(label: str, key: str, digits: int = 4) -> None:
        rows.append((label, *[number(sides[n].get(key), digits) for n in names]))

    row("mAP@0.5", "map50")
    row("mAP@[.5:.95]", "map50_95")
    row("DeepPCB F-score (IoU>0.33)", "deeppcb_fscore")
    row("DeepPCB precision", "deeppcb_precision")
    row("DeepPCB recall", "deeppcb_recall")
    classes = list(next(iter(sides.values()))["f1_per_class"])
    for name in classes:
        rows.append((f"F1 {name}", *[number(sides[n]["f1_per_class"].get(name), 3) for n in names]))
    row("training budget spent (min)", "train_budget_minutes", 1)
    row("training CPU min / thread", "train_cpu_minutes_per_thread", 1)
    row("training wall min (shared machine)", "train_wall_minutes", 1)
    rows.append(("epochs", *[str(sides[n].get("epochs", "")) for n in names]))
    rows.append(("input", *[str(sides[n].get("input", "")) for n in names]))
    row("ONNX graph median ms (2 threads)", "onnx_graph_ms", 1)
    row("engine ms per 640x640 image", "engine_ms_per_640_image", 1)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows]
    for n in names:
        if sides[n].get("onnx_note"):
            lines.append(f"{sides[n]['name']}: {sides[n]['onnx_note']}")
    lines.append(f"command: {command}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "deeppcb"))
    parser.add_argument("--recipe", default="deeppcb")
    parser.add_argument("--minutes", type=float, default=None, help="training budget of each")
    parser.add_argument("--clock", choices=("wall", "cpu"), default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="/tmp/defectlens-detector-benchmark")
    parser.add_argument(
        "--only", choices=("ours", "baseline", "baseline-eval", "table"), default=None
    )
    parser.add_argument(
        "--weights",
        help="baseline-eval: a YOLOv8n checkpoint of an interrupted baseline run to evaluate",
    )
    parser.add_argument(
        "--spent", type=float, help="baseline-eval: budget minutes the checkpoint had used"
    )
    parser.add_argument("--smoke", action="store_true", help="synthetic boards, no baseline")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recipe = load_any_recipe(args.recipe)
    if not isinstance(recipe, DetectorRecipe):
        raise SystemExit(f"{args.recipe}: not a detector recipe")
    data = Path(args.data)
    if args.smoke:
        data = write_pcb_dataset(out / "boards", 32, size=128, seed=0)
        recipe = recipe.model_copy(
            update={
                "name": "smoke",
                "image_size": (128, 128),
                "crop": 64,
                "batch_size": 8,
                "width": 16,
                "top_k": 20,
                "evaluation_fraction": 0.25,
                "validation_fraction": 0.2,
                "schedule": recipe.schedule.model_copy(update={"epochs": 2, "max_minutes": 2}),
            }
        )
    schedule = recipe.schedule.model_copy(
        update={
            key: value
            for key, value in (("max_minutes", args.minutes), ("clock", args.clock))
            if value is not None
        }
    )
    recipe = recipe.model_copy(update={"schedule": schedule, "threads": args.threads})
    sides: dict[str, dict[str, Any]] = {}
    if args.only in (None, "ours"):
        sides["ours"] = run_ours(recipe, data, out, args.threads)
        (out / "ours.json").write_text(json.dumps(sides["ours"], indent=2))
    if args.only in (None, "baseline") and not args.smoke:
        sides["baseline"] = run_yolo(
            recipe, data, out, args.threads, schedule.max_minutes, schedule.clock
        )
        (out / "baseline.json").write_text(json.dumps(sides["baseline"], indent=2))
    if args.only == "baseline-eval":
        sides["baseline"] = evaluate_yolo(Path(args.weights), recipe, data) | {
            "train_budget_minutes": args.spent,
            "onnx_note": f"stopped at {args.spent} of {schedule.max_minutes:g} budget minutes "
            "(the session ran out); graph without NMS",
        }
        (out / "baseline.json").write_text(json.dumps(sides["baseline"], indent=2))
    for name in ("ours", "baseline"):
        saved = out / f"{name}.json"
        if name not in sides and saved.is_file() and args.only in ("table", "baseline-eval", None):
            sides[name] = json.loads(saved.read_text())
    command = (
        f"scripts/benchmark_detector.py --data {args.data} --minutes {schedule.max_minutes:g} "
        f"--clock {schedule.clock}" + (" --smoke" if args.smoke else "")
    )
    if sides:
        print("\n".join(table(sides, command)))


if __name__ == "__main__":
    main()
