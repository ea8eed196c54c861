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
from functools import partial
from pathlib import Path

from defectlens import __version__
from defectlens.errors import DefectLensError, InputError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _train(args: argparse.Namespace) -> int:
    from defectlens.train.evaluate import metrics_table
    from defectlens.train.pipeline import train_model
    from defectlens.train.recipe import load_any_recipe

    recipe = load_any_recipe(Path(args.recipe))
    if recipe.family == "detection":
        from defectlens.train.detector_pipeline import train_detector_command

        return train_detector_command(recipe, args.data, args.out, args.resume)
    version_dir = train_model(
        recipe,
        Path(args.data) if args.data else None,
        Path(args.out),
        skip_bad=args.skip_bad,
        say=partial(print, flush=True),
    )
    card = json.loads((version_dir / "model.json").read_text())
    metrics, skipped = card["metrics"], card["data"].get("skipped", [])
    print(f"\nheld-out evaluation of {version_dir.name}")
    if "counts" in metrics:
        print("\n".join(metrics_table(metrics)))
    else:
        print(f"  {metrics.get('note', 'no held-out images to evaluate on')}")
    if skipped:
        print(f"  bad files left out: {len(skipped)} (listed above; model.json data.skipped)")
    print(f"report: {version_dir / 'report' / 'index.html'}")
    print(version_dir)
    return EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    from defectlens.inference.engine import Engine
    from defectlens.train.evaluate import evaluate_folder, metrics_table

    engine = Engine(Path(args.model_dir), threads=args.threads)
    if engine.card.family == "detection":
        from defectlens.train.detector_evaluate import evaluate_detector_command

        return evaluate_detector_command(engine, args.data, args.report, args.json)
    # with --json, stdout holds the JSON alone: the stage lines go to stderr
    run = evaluate_folder(
        engine,
        Path(args.data),
        report_dir=Path(args.report) if args.report else None,
        include_training_images=args.include_training_images,
        skip_bad=args.skip_bad,
        say=partial(print, file=sys.stderr if args.json else sys.stdout, flush=True),
    )
    for warning in run.warnings:
        print(f"defectlens: warning: {warning}", file=sys.stderr, flush=True)
    if run.report is not None:
        print(f"report: {run.report}", file=sys.stderr)
    if args.json:
        print(json.dumps(run.result, indent=2, default=float))
        return EXIT_OK
    print(f"\n{engine.card.name} {engine.card.version} on {args.data}")
    print("\n".join(metrics_table(run.result)))
    if run.fitted_left_out:
        print(f"  images the model was fitted on, left out: {run.fitted_left_out}")
    if run.skipped:
        print(f"  bad files left out: {len(run.skipped)} (listed above)")
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
    reference = read_image(Path(args.reference)) if args.reference else None
    failures = 0
    records = []
    written: set[str] = set()
    for name in args.images:
        path = Path(name)
        try:
            image = read_image(path)
            prediction = engine.predict(
                image, source=str(path), with_map=overlay_dir is not None, reference=reference
            )
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


def _worker(args: argparse.Namespace) -> int:
    from defectlens.inference.service import ServiceSettings
    from defectlens.train.worker import run_worker

    run_worker(ServiceSettings(), loglevel="DEBUG" if args.verbose else "INFO")
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from defectlens.demo import run_demo

    return run_demo(Path(args.home) if args.home else None)


def _recipes_list(args: argparse.Namespace) -> int:
    from defectlens.train.recipe import shipped_recipes

    recipes = shipped_recipes()
    width = max(len(name) for name in recipes) + 2
    for recipe in recipes.values():
        print(f"{recipe.name:<{width}}{recipe.description}")
    return EXIT_OK


def _recipes_show(args: argparse.Namespace) -> int:
    from defectlens.train.recipe import shipped_recipe

    sys.stdout.write(shipped_recipe(args.name).text)
    return EXIT_OK


def _init(args: argparse.Namespace) -> int:
    from defectlens.train.recipe import init_workspace

    written = init_workspace(Path(args.dir), args.recipe)
    print(f"wrote the workspace {args.dir}:")
    for path in written:
        print(f"  {path}{'/' if path.is_dir() else ''}")
    print(f"next: put good parts' images in {written[2]}/, then follow {written[1]}")
    return EXIT_OK


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
        description="Check every image, fit, calibrate, export to ONNX, check parity and "
        "evaluate. Prints the split used (which images fit, calibrate, evaluate); the last line "
        "printed is the new version folder.",
    )
    train.add_argument("recipe", help="recipe YAML, e.g. configs/anomaly.yaml")
    train.add_argument(
        "--data",
        help="dataset folder (MVTec layout, one folder per class, or a folder of good images; "
        "for detector recipes a DeepPCB folder or a COCO .json); overrides the recipe's `data`",
    )
    train.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out images and masks that cannot be read, and list them (model.json "
        "data.skipped), instead of stopping",
    )
    train.add_argument(
        "--out",
        default="defectlens-workspace/models",
        help="where model versions go (default: %(default)s)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="detector recipes: continue an interrupted run from its last checkpoint "
        "(OUT/NAME/.training/)",
    )
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="measure a model version on a labeled dataset (ONNX Runtime)",
        description="Image AUROC, pixel AUROC, AUPRO, F1, escape and false-reject rates at the "
        "model's threshold, on every test image of --data (test/ of an MVTec folder, with or "
        "without train/; every image of class folders or a folder of good images). Every image "
        "is checked first. Images the model was fitted on (same file content) are left out.",
    )
    evaluate.add_argument("model_dir", metavar="MODEL_DIR")
    evaluate.add_argument("--data", required=True, help="dataset folder, in any layout")
    evaluate.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out images and masks that cannot be read, and list them, instead of stopping",
    )
    evaluate.add_argument(
        "--include-training-images",
        action="store_true",
        help="keep the images the model was fitted on in the figures (left out by default)",
    )
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
    predict.add_argument(
        "--reference",
        metavar="IMAGE",
        help="detectors with a reference input: the parts' aligned defect-free image",
    )
    predict.set_defaults(handler=_predict)

    worker = commands.add_parser(
        "worker",
        help="run training jobs from the workspace's queue until stopped",
        description="Takes jobs started with `defectlens jobs start` or POST /v1/jobs, one at "
        "a time, and runs each as `defectlens train` in a child process, reporting progress "
        "and the log into the store. On PostgreSQL run one on every training machine; on "
        "SQLite `defectlens serve` runs one itself (DEFECTLENS_LOCAL_WORKER).",
    )
    worker.set_defaults(handler=_worker)

    demo = commands.add_parser(
        "demo",
        help="the whole product on generated parts: data, train, evaluate, predict",
    )
    demo.add_argument(
        "--home", help="workspace folder (default: $DEFECTLENS_HOME or ./defectlens-workspace)"
    )
    demo.set_defaults(handler=_demo)
    _add_recipe_commands(commands)
    _add_service_commands(commands)
    return parser


def _add_recipe_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """recipes, init: the shipped recipes, and a starter workspace made from one."""
    recipes = commands.add_parser(
        "recipes",
        help="the training recipes that ship with defectlens: list, show",
        description="A shipped recipe's name works wherever a recipe file does "
        "(`defectlens train anomaly --data PATH`); a file of that name in the current "
        "folder wins.",
    )
    recipe_commands = recipes.add_subparsers(
        dest="recipes_command", metavar="ACTION", required=True
    )
    recipe_commands.add_parser(
        "list", help="each shipped recipe's name and what it is for"
    ).set_defaults(handler=_recipes_list)
    show = recipe_commands.add_parser(
        "show", help="print a shipped recipe as it ships, comments included"
    )
    show.add_argument("name", metavar="NAME", help="a name from `defectlens recipes list`")
    show.set_defaults(handler=_recipes_show)

    init = commands.add_parser(
        "init",
        help="start a workspace: a recipe to edit, the image folders, the next commands",
        description="Writes DIR/recipe.yaml (a shipped recipe with its comments, reading "
        "DIR/images), DIR/README.txt (the folder layout and the commands to train, evaluate, "
        "promote and serve) and the empty image folders. DIR must be new or empty.",
    )
    init.add_argument("dir", metavar="DIR", help="the new workspace folder")
    init.add_argument(
        "--recipe",
        default="anomaly",
        help="the shipped recipe to start from (default: %(default)s; see `defectlens "
        "recipes list`)",
    )
    init.set_defaults(handler=_init)


def _add_service_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The inspection service's commands (serve, models, keys, ...) live beside the service."""
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
