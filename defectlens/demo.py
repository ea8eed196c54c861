"""`defectlens demo`: the product end to end on generated parts, in a workspace folder."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

from defectlens.settings import load_settings


def run_demo(home: Path | None = None) -> int:
    from defectlens.datasets.synthetic import generate_dataset
    from defectlens.inference.engine import Engine
    from defectlens.train.pipeline import train_model
    from defectlens.train.recipe import load_recipe

    settings = load_settings(**({"home": home} if home else {}))
    workspace = settings.home
    data = workspace / "datasets" / "synthetic-parts"
    if data.exists():
        shutil.rmtree(data)
    data.parent.mkdir(parents=True, exist_ok=True)
    print(f"1/4 generating synthetic parts in {data}")
    generate_dataset(data, train_good=80, test_good=30, test_defect_per_kind=8, seed=7)

    recipe_file = resources.files("defectlens.configs") / "anomaly.yaml"
    with resources.as_file(recipe_file) as path:
        recipe = load_recipe(Path(path)).model_copy(update={"name": "demo-parts"})
    print("2/4 training (features, coreset, calibration, ONNX export, parity, evaluation)")
    version = train_model(recipe, data, settings.models_dir)
    card = json.loads((version / "model.json").read_text())
    metrics = card["metrics"]

    print("3/4 held-out evaluation of the exported ONNX model")
    for key in ("image_auroc", "pixel_auroc", "aupro", "escape_rate", "false_reject_rate"):
        value = metrics.get(key)
        print(f"    {key:<18} {value:.3f}" if isinstance(value, float) else f"    {key:<18} -")

    print("4/4 inspecting test parts with ONNX Runtime")
    engine = Engine(version, threads=settings.threads)
    verdicts: dict[str, int] = {"OK": 0, "NG": 0}
    correct = 0
    samples = sorted((data / "test").glob("*/*.png"))
    for path in samples:
        prediction = engine.predict(path.read_bytes(), source=str(path), with_map=False)
        verdicts[prediction.verdict] += 1
        correct += (prediction.verdict == "NG") == (path.parent.name != "good")
    print(
        f"    {len(samples)} parts: {verdicts['OK']} OK, {verdicts['NG']} NG, "
        f"{correct} verdicts match the ground truth"
    )
    print(f"model version: {version}")
    print(f"report:        {version / 'report' / 'index.html'}")
    return 0
