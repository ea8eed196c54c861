"""Training end to end on synthetic parts: what a QA engineer relies on after `train`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml

from defectlens.datasets.images import read_image, read_mask, to_model_input
from defectlens.datasets.layout import open_dataset
from defectlens.errors import RecipeError
from defectlens.inference.engine import Engine
from defectlens.modelcard import ModelCard, file_sha256
from defectlens.train import pipeline
from defectlens.train.metrics import auroc
from defectlens.train.recipe import load_recipe
from defectlens.train.splits import TRAINING_IMAGES_FILE, read_training_images


def test_version_folder_holds_the_contract(trained_model: Path) -> None:
    names = {p.name for p in trained_model.iterdir()}
    assert {"model.onnx", "model.json", "recipe.yaml", "report"} <= names
    card = ModelCard.read(trained_model / "model.json")
    assert card.sha256 == file_sha256(trained_model / "model.onnx")
    assert card.version.endswith(card.sha256[:6])
    assert card.threshold == 0.5
    assert card.input.channels == 1 and card.input.color == "gray"
    assert [o.name for o in card.outputs] == ["score", "anomaly_map"]
    assert card.parity["max_abs_score"] < 1e-3 and card.parity["max_abs_map"] < 1e-3
    assert {"image_auroc", "pixel_auroc", "aupro", "escape_rate", "false_reject_rate"} <= set(
        card.metrics
    )
    # Generated test parts are new parts, not re-shots of the fit images: distance from
    # the training images alone does not single out the defective ones.
    assert 0.0 < card.metrics["training_nearest_similarity"] < 0.99
    assert card.metrics["defective_farther_from_training_auroc"] < 0.9
    quantiles = card.metrics["good_score_quantiles"]  # the reports' score drift reads them
    assert len(quantiles) == 21 and quantiles == sorted(quantiles)
    assert quantiles[0] >= 0.0 and quantiles[10] < 0.5  # the median good part is OK
    report = trained_model / "report"
    assert (report / "index.html").is_file() and (report / "metrics.json").is_file()
    assert (report / "roc.png").stat().st_size > 1000
    # nothing left of the staging folder
    assert not [p for p in trained_model.parent.iterdir() if p.name.startswith(".staging")]


def test_version_records_the_images_it_was_trained_on(trained_model: Path) -> None:
    card = ModelCard.read(trained_model / "model.json")
    record = read_training_images(trained_model)
    assert record is not None and card.data["training_images"] == TRAINING_IMAGES_FILE
    assert len(record.fit) == card.data["splits"]["fit_good"]
    splits = card.data["splits"]
    assert len(record.calibration) == splits["calibration_good"] + splits["calibration_defective"]
    root = Path(card.data["path"])
    for digest, name in [*record.fit.items(), *record.calibration.items()]:
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest
    assert all(name.startswith("train/good/") for name in record.fit.values())
    assert card.data["skipped"] == []


def test_model_separates_defects_from_good_parts(trained_model: Path, synthetic_data: Path) -> None:
    engine = Engine(trained_model)
    samples = open_dataset(synthetic_data).test
    scores = [engine.predict(read_image(s.path), with_map=False).score for s in samples]
    labels = [s.is_defective for s in samples]
    assert auroc(labels, scores) >= 0.9


def test_anomaly_map_peaks_on_the_defect(trained_model: Path, synthetic_data: Path) -> None:
    engine = Engine(trained_model)
    defective = [s for s in open_dataset(synthetic_data).test if s.mask_path is not None]
    hits = 0
    for sample in defective:
        image = read_image(sample.path)
        prediction = engine.predict(image)
        mask = read_mask(sample.mask_path, image.shape[:2])  # type: ignore[arg-type]
        grown = np.zeros_like(mask)
        ys, xs = np.nonzero(mask)
        # within 8 px of the defect: the map is smoothed and computed at stride 8
        grown[max(ys.min() - 8, 0) : ys.max() + 9, max(xs.min() - 8, 0) : xs.max() + 9] = True
        peak = np.unravel_index(np.argmax(prediction.anomaly_map), mask.shape)
        hits += bool(grown[peak])
    assert hits / len(defective) >= 0.8


def test_onnx_graph_takes_batch_one_and_many(trained_model: Path, synthetic_data: Path) -> None:
    card = ModelCard.read(trained_model / "model.json")
    images = [
        to_model_input(read_image(s.path), card.input)
        for s in open_dataset(synthetic_data).test[:3]
    ]
    session = ort.InferenceSession(str(trained_model / "model.onnx"))
    batch = np.stack(images)
    scores, maps = session.run(None, {"image": batch})
    assert scores.shape == (3,) and maps.shape == (3, 256, 256)
    one_score, _ = session.run(None, {"image": batch[1:2]})
    assert one_score[0] == pytest.approx(scores[1], abs=1e-5)
    assert np.all((maps >= 0) & (maps <= 1))


def test_onnx_runtime_folds_the_backbone_padding_into_the_convolutions(
    trained_model: Path, tmp_path: Path
) -> None:
    # The backbone's TF "same" convolutions pad their input first; the exported graph must
    # let ONNX Runtime fold those pads into the convolutions instead of copying the tensor.
    def constant_pads(model: onnx.ModelProto) -> list[str]:
        modes = {
            node.name: next((a.s for a in node.attribute if a.name == "mode"), b"constant")
            for node in model.graph.node
            if node.op_type == "Pad"
        }
        return [name for name, mode in modes.items() if mode == b"constant"]

    assert constant_pads(onnx.load(str(trained_model / "model.onnx")))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(trained_model / "model.onnx"), options)
    assert constant_pads(onnx.load(str(tmp_path / "optimized.onnx"))) == []


def test_engine_refuses_an_altered_model(model_copy: Path) -> None:
    onnx_path = model_copy / "model.onnx"
    onnx_path.write_bytes(onnx_path.read_bytes() + b"\0")
    with pytest.raises(Exception, match="sha256 does not match"):
        Engine(model_copy)


def test_interrupted_training_leaves_no_version(
    synthetic_data: Path, small_recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_export(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "export_onnx", broken_export)
    with pytest.raises(KeyboardInterrupt):
        pipeline.train_model(load_recipe(small_recipe), synthetic_data, tmp_path)
    assert list((tmp_path / "test-parts").iterdir()) == []


def test_good_parts_alone_train_with_the_threshold_set_by_false_rejects(
    tmp_path: Path, small_recipe: Path
) -> None:
    """best_f1 needs defective images; with none, the threshold comes from the good parts
    (target_frr) and model.json says so."""
    from defectlens.datasets.synthetic import generate_dataset

    data = generate_dataset(
        tmp_path / "good-only", train_good=12, test_good=4, test_defect_per_kind=0, seed=1, size=64
    )
    raw = yaml.safe_load(small_recipe.read_text())
    raw.update(image_size=64)
    raw["backbone"]["context_neighbourhood"] = 3  # the feature map is 4x4
    recipe = tmp_path / "small64.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    version = pipeline.train_model(load_recipe(recipe), data, tmp_path / "models")
    card = ModelCard.read(version / "model.json")
    assert card.calibration.policy == "target_frr"
    assert any("best_f1 needs defective images" in w for w in card.calibration.warnings)


def test_colour_parts_in_class_folders_train_an_rgb_model(
    tmp_path: Path, small_recipe: Path
) -> None:
    """The other layout and colour images: one folder per class, everything in one pool."""
    import shutil

    from defectlens.datasets.synthetic import generate_dataset

    mvtec = generate_dataset(
        tmp_path / "mvtec",
        train_good=20,
        test_good=8,
        test_defect_per_kind=3,
        seed=5,
        color=True,
    )
    folders = tmp_path / "folders"
    for source in [*(mvtec / "train" / "good").iterdir(), *(mvtec / "test").glob("*/*.png")]:
        kind = source.parent.name
        target = folders / kind / f"{source.parent.parent.name}-{source.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    version = pipeline.train_model(load_recipe(small_recipe), folders, tmp_path / "models")
    card = ModelCard.read(version / "model.json")
    assert card.input.channels == 3 and card.input.color == "rgb"
    assert card.data["layout"] == "folders"
    # 28 good images: 80 % (22) are training images, 15 % of those (3) calibrate, 19 fit
    assert card.data["splits"]["fit_good"] == 19
    assert card.data["split_rule"].startswith("one folder per class: 80 % of the good images")
    assert card.metrics["image_auroc"] >= 0.8


def test_context_term_without_position_gaussians_is_refused(tmp_path: Path) -> None:
    recipe = tmp_path / "free.yaml"
    recipe.write_text("name: x\nbackbone:\n  position_gaussian: false\n")
    with pytest.raises(RecipeError, match="context_neighbourhood needs position_gaussian"):
        load_recipe(recipe)
    recipe.write_text(
        "name: x\nbackbone:\n  position_gaussian: false\n  context_neighbourhood: 0\n"
    )
    assert load_recipe(recipe).backbone.context_neighbourhood == 0


def test_standardize_reads_booleans_and_names_a_bad_value(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    for written, read in (("true", "global"), ("false", "off"), ("local", "local")):
        recipe.write_text(f"name: x\nstandardize: {written}\n")
        assert load_recipe(recipe).standardize == read
    recipe.write_text("name: x\nstandardize: sideways\n")
    with pytest.raises(RecipeError, match="'standardize'"):
        load_recipe(recipe)


def test_local_standardisation_and_row_profile_train_and_export_with_parity(
    tmp_path: Path, synthetic_data: Path, small_recipe: Path
) -> None:
    # The options of configs/magnetic_tile.yaml: both go into the ONNX graph, whose parity
    # with PyTorch the export checks (and refuses the model if it fails).
    raw = yaml.safe_load(small_recipe.read_text())
    raw["standardize"] = "local"
    raw["backbone"].update(position_weight=0.5, row_profile_weight=1.0)
    recipe = tmp_path / "banded.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    version = pipeline.train_model(load_recipe(recipe), synthetic_data, tmp_path / "models")
    card = ModelCard.read(version / "model.json")
    assert card.parity["max_abs_score"] < 1e-3 and card.parity["max_abs_map"] < 1e-3
    assert card.metrics["image_auroc"] >= 0.9
    assert card.metrics["pixel_auroc"] >= 0.9
    graph = onnx.load(str(version / "model.onnx")).graph
    pad_modes = {
        attribute.s.decode()
        for node in graph.node
        if node.op_type == "Pad"
        for attribute in node.attribute
        if attribute.name == "mode"
    }
    assert "reflect" in pad_modes  # the local window's padding is in the graph
