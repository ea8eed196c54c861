"""The `defectlens` command. Each subcommand parses its arguments and calls one function.

Exit status: 0 success, 2 bad usage or input (one line saying what and where), 1 anything else.
Heavy imports (torch, ONNX Runtime) happen inside the subcommand that needs them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from defectlens import __version__
from defectlens.errors import DefectLensError, InputError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _train(args: argparse.Namespace) -> int:
    from defectlens.train.pipeline import train_model
    from defectlens.train.recipe import load_recipe

    recipe = load_recipe(Path(args.recipe))
    version_dir = train_model(recipe, Path(args.data) if args.data else None, Path(args.out))
    metrics = json.loads((version_dir / "model.json").read_text())["metrics"]
    _print_metrics(metrics, header=f"held-out evaluation of {version_dir.name}")
    print(f"report: {version_dir / 'report' / 'index.html'}")
    print(version_dir)
    return EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    from defectlens.datasets.layout import open_dataset
    from defectlens.inference.engine import Engine
    from defectlens.train.evaluate import evaluate, training_thumbnails
    from defectlens.train.report import write_report

    engine = Engine(Path(args.model_dir), threads=args.threads)
    dataset = open_dataset(Path(args.data))
    samples = dataset.test
    if not samples:
        raise InputError(f"{args.data}: no test images to evaluate on")
    plots_dir = Path(args.report) if args.report else None
    # How close the images are to the model's training images, where those are still there.
    trained_on = Path(str(engine.card.data.get("path", "")))
    training = None
    if trained_on.name and trained_on.is_dir():
        try:
            training = training_thumbnails(engine, open_dataset(trained_on).train)
        except DefectLensError as error:
            print(f"training images not compared: {error}", file=sys.stderr)
    result, plots = evaluate(engine, samples, plots_dir, training)
    if plots_dir is not None:
        card = engine.card
        page = write_report(
            plots_dir,
            result,
            plots,
            {"name": card.name, "version": card.version, "data": str(args.data)},
        )
        print(f"report: {page}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2, default=float))
    else:
        _print_metrics(result, header=f"{engine.card.name} {engine.card.version} on {args.data}")
    return EXIT_OK


def _predict(args: argparse.Namespace) -> int:
    import cv2

    from defectlens.datasets.images import read_image
    from defectlens.inference.engine import Engine
    from defectlens.inference.overlay import render_overlay

    engine = Engine(Path(args.model_dir), threads=args.threads)
    overlay_dir = Path(args.overlay) if args.overlay else None
    if overlay_dir is not None:
        overlay_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    records = []
    written: set[str] = set()
    for name in args.images:
        path = Path(name)
        try:
            image = read_image(path)
            prediction = engine.predict(image, source=str(path), with_map=overlay_dir is not None)
        except InputError as exc:
            failures += 1
            print(f"defectlens: error: {exc}", file=sys.stderr)
            continue
        if overlay_dir is not None:
            overlay_name = f"{path.stem}_overlay.png"
            if overlay_name in written:  # the same stem from another folder: keep both
                overlay_name = f"{path.parent.name}_{overlay_name}"
            written.add(overlay_name)
            cv2.imwrite(str(overlay_dir / overlay_name), render_overlay(image, prediction))
        record = {"image": str(path), **prediction.model_dump(mode="json", by_alias=True)}
        records.append(record)
        if not args.json:
            print(
                f"{prediction.verdict}  {prediction.score:.3f}  defects={len(prediction.defects)}"
                f"  {prediction.timings_ms.total:.1f} ms  {path}"
            )
    if args.json:
        print(json.dumps(records, indent=2))
    return EXIT_USAGE if failures else EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from defectlens.demo import run_demo

    return run_demo(Path(args.home) if args.home else None)


def _print_metrics(metrics: dict[str, object], header: str) -> None:
    print(header)
    for key in (
        "image_auroc",
        "pixel_auroc",
        "aupro",
        "f1",
        "escape_rate",
        "false_reject_rate",
        "threshold",
        "fit_seconds",
    ):
        value = metrics.get(key)
        if value is not None:
            print(
                f"  {key:<18} {value:.4f}" if isinstance(value, float) else f"  {key:<18} {value}"
            )
    counts = metrics.get("counts")
    if counts:
        print(f"  {'images':<18} {counts}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="defectlens",
        description="AI visual quality inspection: train defect models from images, "
        "inspect parts with ONNX Runtime, report OK/NG.",
    )
    parser.add_argument("--version", action="version", version=f"defectlens {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="fit a model from a recipe and write a new model version folder",
        description="Fit, calibrate, export to ONNX, check parity and evaluate. The last line "
        "printed is the new version folder.",
    )
    train.add_argument("recipe", help="recipe YAML, e.g. configs/anomaly.yaml")
    train.add_argument(
        "--data",
        help="dataset folder (MVTec layout or one folder per class); overrides the recipe's `data`",
    )
    train.add_argument(
        "--out",
        default="defectlens-workspace/models",
        help="where model versions go (default: %(default)s)",
    )
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="measure a model version on a labeled dataset (ONNX Runtime)",
        description="Image AUROC, pixel AUROC, AUPRO, F1, escape and false-reject rates at the "
        "model's threshold, on every test image of --data.",
    )
    evaluate.add_argument("model_dir", metavar="MODEL_DIR")
    evaluate.add_argument("--data", required=True, help="dataset folder")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.add_argument("--report", metavar="DIR", help="also write plots and index.html here")
    evaluate.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    evaluate.set_defaults(handler=_evaluate)

    predict = commands.add_parser(
        "predict",
        help="inspect images with a model version: OK/NG, score, defect boxes",
        description="Runs ONNX Runtime only. Exit status 2 if any image could not be read "
        "(the others are still inspected).",
    )
    predict.add_argument("model_dir", metavar="MODEL_DIR")
    predict.add_argument("images", metavar="IMAGE", nargs="+")
    predict.add_argument("--json", action="store_true", help="one JSON list of predictions")
    predict.add_argument("--overlay", metavar="DIR", help="write heat-map overlays (PNG) here")
    predict.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    predict.set_defaults(handler=_predict)

    demo = commands.add_parser(
        "demo",
        help="the whole product on generated parts: data, train, evaluate, predict",
    )
    demo.add_argument(
        "--home", help="workspace folder (default: $DEFECTLENS_HOME or ./defectlens-workspace)"
    )
    demo.set_defaults(handler=_demo)
    _add_service_commands(commands)
    return parser


def _add_service_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """serve, models, keys: the inspection service's commands live beside the service."""
    from defectlens.inference.commands import add_commands

    add_commands(commands)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args))
    except InputError as exc:
        print(f"defectlens: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DefectLensError as exc:
        print(f"defectlens: failed: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("defectlens: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
