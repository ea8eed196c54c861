"""The demo's detector part: synthetic PCB-like boards with labelled defects, a small
detector trained on them (under a minute), and boards inspected with ONNX Runtime,
each defect named with its class, box and PLC defect code."""

from __future__ import annotations

import shutil
from pathlib import Path

from defectlens.datasets.detection import open_detection_dataset
from defectlens.datasets.synthetic_pcb import write_pcb_dataset

SHOWN = 3
"""Boards whose defects are printed."""


def run_detector_demo(home: Path) -> Path:
    """Train the demo detector into `home`'s models folder; print its held-out figures and
    a few inspected boards; return the version folder."""
    from defectlens.inference.engine import Engine
    from defectlens.inference.postprocess import defect_code
    from defectlens.train.detector_pipeline import train_detector
    from defectlens.train.detector_recipe import DetectorRecipe

    data = home / "datasets" / "synthetic-boards"
    if data.exists():
        shutil.rmtree(data)
    annotations = write_pcb_dataset(data, 48, size=128, seed=5)
    print(f"    boards with labelled defects in {data}; training (under a minute)")
    recipe = DetectorRecipe.model_validate(
        {
            "name": "demo-boards",
            "image_size": 128,
            "crop": 96,
            "crops_per_image": 8,
            "width": 16,
            "top_k": 20,
            "batch_size": 8,
            "evaluation_fraction": 0.25,
            "validation_fraction": 0.15,
            "schedule": {"epochs": 6, "max_minutes": 0.75, "patience": 6},
        }
    )
    version = train_detector(recipe, annotations, home / "models", say=lambda _: None)
    engine = Engine(version, threads=1)
    metrics = engine.card.metrics
    print(
        f"    held-out: mAP@0.5 {metrics['map50']:.3f}, F-score {metrics['f1']:.3f} "
        f"(classes {', '.join(engine.card.classes)})"
    )
    for sample in open_detection_dataset(annotations).samples[-SHOWN:]:
        prediction = engine.predict(sample.image.read_bytes(), source=str(sample.image))
        found = ", ".join(
            f"{d.class_} {d.box} code {defect_code(engine.card, d.class_)}"
            for d in prediction.defects
        )
        print(f"    {sample.name}: {prediction.verdict} {found or '(no defect found)'}")
    print(f"    detector version: {version}")
    return version
