"""`defectlens labels import|export|list|classes|add-class` and `defectlens datasets
freeze|list|show|export`: the label store and its dataset versions from the command line.
Each handler opens the workspace's store and calls one service function
(`service/labelling.py`, `service/dataset_versions.py`)."""

from __future__ import annotations

import argparse
import getpass
import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from defectlens.datasets.labels.model import Split
from defectlens.errors import InputError

EXIT_OK = 0
FORMAT_HELP = "coco (JSON, boxes and polygons), yolo, voc (Pascal VOC XML), masks (mask folder)"


def add_label_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `labels` and `datasets` to the `defectlens` command."""
    from defectlens.datasets.labels.formats import EXPORT_FORMATS, IMPORT_FORMATS

    labels = commands.add_parser(
        "labels",
        help="the label store: import and export labelled images, list them",
        description="Labelled images live in the workspace's label store (<home>/labels/ "
        "and the database): production results a QA engineer labelled, and imported files.",
    )
    actions = labels.add_subparsers(dest="labels_command", metavar="ACTION", required=True)

    imports = actions.add_parser(
        "import",
        help="import a labelled folder (everything is checked first; one transaction)",
        description="Reads the whole folder first; an image whose label is malformed, "
        "reaches outside it, names an unknown class, or whose file is missing or unreadable "
        "is skipped and listed with the reason. Exit status 2 if nothing could be imported.",
    )
    imports.add_argument("path", metavar="PATH", help="the folder (or a COCO .json file)")
    imports.add_argument(
        "--format",
        required=True,
        choices=IMPORT_FORMATS,
        help=f"{FORMAT_HELP}, deeppcb (DeepPCB's lists; the template becomes the reference)",
    )
    imports.add_argument(
        "--create-classes",
        action="store_true",
        help="add the classes the store does not know (default: skip their images)",
    )
    imports.add_argument("--source", help="the import's name (default: the folder's name)")
    imports.add_argument(
        "--mask-values",
        metavar="MAP",
        help="for masks by pixel value: VALUE=CLASS,... (default: the folder's classes.txt)",
    )
    imports.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_author(imports)
    imports.set_defaults(handler=_import)

    export = actions.add_parser("export", help="write labelled images in a label format")
    export.add_argument("out", metavar="OUT", help="a new (or empty) folder")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS, help=FORMAT_HELP)
    _add_filters(export)
    export.set_defaults(handler=_export)

    listing = actions.add_parser("list", help="samples and their standing labels")
    _add_filters(listing)
    listing.add_argument("--unlabelled", action="store_true", help="only samples with no label")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--json", action="store_true", help="one JSON list")
    listing.set_defaults(handler=_list)

    actions.add_parser("classes", help="the defect classes").set_defaults(handler=_classes)
    add_class = actions.add_parser("add-class", help="add a defect class")
    add_class.add_argument("name", metavar="NAME")
    add_class.add_argument("--plc-code", type=int, help="the code a PLC receives for it")
    add_class.set_defaults(handler=_add_class)

    _add_dataset_commands(commands, EXPORT_FORMATS)


def _add_dataset_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], formats: tuple[str, ...]
) -> None:
    datasets = commands.add_parser(
        "datasets",
        help="dataset versions: freeze the label store, list, show, export",
        description="A dataset version is an immutable folder <home>/datasets/<name>/"
        "<version>/ (manifest.json, coco.json, images/, good/); its version is the hash of "
        "its manifest, so freezing the same labels again gives the same version.",
    )
    actions = datasets.add_subparsers(dest="datasets_command", metavar="ACTION", required=True)
    freeze = actions.add_parser("freeze", help="freeze the labelled samples into a version")
    freeze.add_argument("name", metavar="NAME", help="the dataset's name, e.g. pcb-top")
    freeze.add_argument("--source", help="only this import or station")
    freeze.add_argument(
        "--classes", help="CLASS,...: only samples whose classes are all among these (and OK)"
    )
    freeze.add_argument(
        "--since", type=datetime.fromisoformat, help="labelled at or after (ISO 8601; UTC)"
    )
    freeze.add_argument(
        "--until", type=datetime.fromisoformat, help="labelled before (ISO 8601; UTC)"
    )
    freeze.add_argument("--seed", type=int, default=0, help="the split's seed (default 0)")
    freeze.add_argument(
        "--split",
        default="0.7,0.15,0.15",
        metavar="TRAIN,VAL,TEST",
        help="fractions of each class (default 0.7,0.15,0.15); a sample's split hint wins",
    )
    _add_author(freeze, "the version")
    freeze.set_defaults(handler=_freeze)
    listing = actions.add_parser("list", help="dataset versions, newest first")
    listing.add_argument("--name", help="only this dataset")
    listing.set_defaults(handler=_versions)
    show = actions.add_parser("show", help="a version's folder and counts")
    show.add_argument("version", metavar="VERSION", help="its id (or a unique start of it)")
    show.set_defaults(handler=_show)
    export = actions.add_parser("export", help="write a version in a label format")
    export.add_argument("version", metavar="VERSION")
    export.add_argument("out", metavar="OUT", help="a new (or empty) folder")
    export.add_argument("--format", required=True, choices=formats, help=FORMAT_HELP)
    export.set_defaults(handler=_export_version)


def _add_author(parser: argparse.ArgumentParser, what: str = "the labels") -> None:
    parser.add_argument("--author", help=f"recorded with {what} (default: cli:<your user name>)")


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", help="only this import or station")
    parser.add_argument("--verdict", choices=("OK", "NG"), help="only this verdict")
    parser.add_argument("--class", dest="defect_class", help="only samples with this class")
    parser.add_argument("--split", choices=("train", "val", "test"), help="only this split hint")


def _open() -> tuple[Any, Any]:
    from defectlens.inference.service import ServiceSettings
    from defectlens.inference.store import Store, open_database

    settings = ServiceSettings()
    database = open_database(settings.resolved_database_url, timeout_s=settings.database_timeout_s)
    return settings, Store(database, instance=settings.instance_id)


def _author(args: argparse.Namespace) -> str:
    return str(args.author or f"cli:{getpass.getuser()}")


def _filter(args: argparse.Namespace, labelled: bool | None = True) -> Any:
    from defectlens.inference.store.labels import SampleFilter

    return SampleFilter(
        source=args.source,
        labelled=labelled,
        verdict=getattr(args, "verdict", None),
        defect_class=getattr(args, "defect_class", None),
        split=getattr(args, "split", None),
    )


def _import(args: argparse.Namespace) -> int:
    from defectlens.datasets.labels.formats import parse_mask_values
    from defectlens.inference.service.labelling import NothingImported, import_labels

    values = parse_mask_values(args.mask_values) if args.mask_values else None
    settings, store = _open()
    with store.db:
        try:
            report = import_labels(
                store,
                settings,
                args.format,
                Path(args.path),
                _author(args),
                create_classes=args.create_classes,
                source=args.source,
                mask_values=values,
            )
        except NothingImported as exc:
            if args.json:
                print(json.dumps(asdict(exc.report), indent=2))
            else:
                print("\n".join(exc.report.lines()))
            raise
    print(json.dumps(asdict(report), indent=2) if args.json else "\n".join(report.lines()))
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from defectlens.inference.service.labelling import export_labels

    settings, store = _open()
    with store.db:
        written, left_out = export_labels(
            store, settings, args.format, Path(args.out), _filter(args)
        )
    for line in left_out:
        print(f"left out: {line}")
    print(f"wrote {written} labelled images as {args.format} to {args.out}")
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    _, store = _open()
    with store.db:
        samples = store.list_samples(
            _filter(args, labelled=False if args.unlabelled else None), limit=args.limit
        )
    if args.json:
        print(json.dumps([_sample_json(s) for s in samples], indent=2, default=str))
        return EXIT_OK
    for sample in samples:
        label = sample.label
        what = "unlabelled" if label is None else label.annotation.verdict
        classes = "" if label is None else ",".join(label.annotation.classes)
        origin = f"result {sample.result_id}" if sample.result_id else (sample.sha256 or "")[:12]
        print(f"{sample.id:>6}  {what:<10} {classes:<24} {sample.source or '-':<16} {origin}")
    return EXIT_OK


def _sample_json(sample: Any) -> dict[str, Any]:
    data: dict[str, Any] = asdict(sample)
    return data


def _classes(args: argparse.Namespace) -> int:
    _, store = _open()
    with store.db:
        for found in store.classes():
            code = "" if found.plc_code is None else f"  PLC code {found.plc_code}"
            print(f"{found.name}{code}")
    return EXIT_OK


def _add_class(args: argparse.Namespace) -> int:
    from defectlens.datasets.labels.model import check_class_name

    _, store = _open()
    with store.db:
        store.add_class(check_class_name(args.name, "class"), args.plc_code)
    print(f"added class {args.name}")
    return EXIT_OK


def _fractions(text: str) -> dict[Split, float]:
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3:
        raise InputError(f"--split {text!r}: expected three fractions TRAIN,VAL,TEST")
    return {"train": values[0], "val": values[1], "test": values[2]}


def _freeze(args: argparse.Namespace) -> int:
    from defectlens.inference.service.dataset_versions import freeze_dataset
    from defectlens.inference.store.labels import SampleFilter

    where = SampleFilter(
        source=args.source,
        labelled=True,
        labelled_since=args.since,
        labelled_until=args.until,
    )
    classes = {c.strip() for c in args.classes.split(",") if c.strip()} if args.classes else None
    settings, store = _open()
    with store.db:
        frozen = freeze_dataset(
            store,
            settings,
            args.name,
            _author(args),
            where=where,
            classes=classes,
            seed=args.seed,
            fractions=_fractions(args.split),
        )
    for line in frozen.left_out:
        print(f"left out: {line}")
    version = frozen.version
    state = "frozen" if frozen.created else "unchanged since it was frozen"
    print(f"{version.name} {version.id}: {state}; {_counts_line(version.counts)}")
    print(version.path)
    return EXIT_OK


def _counts_line(counts: dict[str, Any]) -> str:
    parts = [f"{counts.get('images', 0)} images"]
    for split, by_class in counts.get("by_split", {}).items():
        inner = ", ".join(f"{name} {n}" for name, n in by_class.items()) or "none"
        parts.append(f"{split}: {inner}")
    return "; ".join(parts)


def _versions(args: argparse.Namespace) -> int:
    _, store = _open()
    with store.db:
        versions = store.dataset_versions(args.name)
    for version in versions:
        print(
            f"{version.id}  {version.name:<20} {version.created_at:%Y-%m-%d %H:%M}  "
            f"{version.counts.get('images', 0):>6} images  {version.created_by or '-'}"
        )
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    _, store = _open()
    with store.db:
        version = store.dataset_version(args.version)
    print(f"{version.name} {version.id}")
    print(f"  folder: {version.path}")
    print(f"  frozen: {version.created_at:%Y-%m-%d %H:%M} UTC by {version.created_by or '-'}")
    print(f"  {_counts_line(version.counts)}")
    print(f"  detector data: {Path(version.path) / 'coco.json'}")
    good = Path(version.path) / "good"
    if good.is_dir():
        print(f"  anomaly data (good parts): {good}")
    return EXIT_OK


def _export_version(args: argparse.Namespace) -> int:
    from defectlens.inference.service.dataset_versions import export_version

    settings, store = _open()
    with store.db:
        written = export_version(store, settings, args.version, args.format, Path(args.out))
    print(f"wrote {written} images as {args.format} to {args.out}")
    return EXIT_OK
