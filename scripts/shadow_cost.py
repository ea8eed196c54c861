"""What shadow mode costs the line: two services side by side, B with a shadow run, A without.

    .venv/bin/python scripts/shadow_cost.py --model MODEL_DIR             # shadow on the station
    .venv/bin/python scripts/shadow_cost.py --model MODEL_DIR --elsewhere # on another station

Starts `defectlens serve` twice (scripts/compare_serving.py), registers a copy of the model
under another version name in B's workspace and starts a shadow run of it on B's station
(all parts, or `--sample`), or with `--elsewhere` on a second station of B that gets no
parts. Then it sends the same parts to both in turn and prints, as compare_serving does, the
p50 end to end and around the model per side and the pair-by-pair difference, then how
many parts B shadowed and skipped. First it times `ShadowRunner.offer` for a station
without a run in this process: the whole cost such a station pays per part.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import timeit
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from compare_serving import Side, report, send_in_turn, start
from load_test import STATION, part_images, stop, train_model

from defectlens.inference.service.deployments import register_model_dir
from defectlens.inference.service.shadow import ShadowRunner, begin_shadow
from defectlens.inference.store import Store, open_database
from defectlens.prediction import ModelRef, Timings
from defectlens.result import InspectionResult

SHADOW_HOURS = 2.0
PICKUP_S = 6.0
"""The service looks for shadow runs every 5 s with deployment polling off."""


def offer_cost_ns(home: Path) -> float:
    """ns per `offer` of a part of a station without a shadow run (the hook on every part)."""
    store = Store(open_database(f"sqlite:///{home / 'offer.db'}"))
    runner = ShadowRunner(store, home / "images", queue_size=16)
    result = InspectionResult(
        result_id="0" * 26,
        verdict="OK",
        score=0.1,
        threshold=0.5,
        defects=[],
        timings_ms=Timings(),
        model=ModelRef(name="m", version="v"),
        received_at=datetime.now(UTC),
        station=STATION,
    )
    image = np.zeros((8, 8), np.uint8)
    calls = 200_000
    seconds = min(timeit.repeat(lambda: runner.offer(result, image, b""), number=calls, repeat=5))
    runner.close()
    store.db.close()
    return seconds / calls * 1e9


def start_shadow_run(home: Path, model: Path, station: str, sample: float) -> tuple[Store, int]:
    """A copy of `model` under another version, registered in the workspace at `home`, and a
    shadow run of it on `station` (created with the model promoted if it is not the bench's)."""
    card = json.loads((model / "model.json").read_text())
    copy = home / "models" / card["name"] / f"{card['version']}-shadow"
    shutil.copytree(model, copy)
    card["version"] = copy.name
    (copy / "model.json").write_text(json.dumps(card, indent=2))
    store = Store(open_database(f"sqlite:///{home / 'defectlens.db'}"))
    if station != STATION:
        production = store.active_deployment(STATION)
        assert production is not None
        store.promote(station, production.model_version.id, actor="shadow-cost")
    version = register_model_dir(store, copy)
    run, _ = begin_shadow(store, station, version.id, sample, SHADOW_HOURS, "shadow-cost")
    return store, run.id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model version folder (default: train one)")
    parser.add_argument("--requests", type=int, default=600, help="parts sent to each side")
    parser.add_argument("--warmup", type=int, default=40, help="parts sent to each side first")
    parser.add_argument("--images", type=int, default=24, help="distinct synthetic parts")
    parser.add_argument("--threads", type=int, default=2, help="DEFECTLENS_THREADS of both")
    parser.add_argument("--sample", type=float, default=1.0, help="share of parts shadowed")
    parser.add_argument(
        "--elsewhere",
        action="store_true",
        help="run the shadow on a second station of B, which gets no parts",
    )
    args = parser.parse_args()
    if not 0 < args.sample <= 1:
        parser.error(f"--sample {args.sample}: give a share above 0, at most 1")
    with tempfile.TemporaryDirectory(prefix="defectlens-shadow-cost-") as tmp:
        model = args.model or train_model(Path(tmp))
        if not (model / "model.json").is_file():
            parser.error(f"{model}: not a model version folder (no model.json)")
        print(f"offer() for a station without a shadow run: {offer_cost_ns(Path(tmp)):.0f} ns")
        sides: list[Side] = []
        store = None
        try:
            for name in ("A", "B"):
                sides.append(start(name, model, {}, args.threads, Path(tmp) / name))
            a, b = sides
            station = "elsewhere" if args.elsewhere else STATION
            store, run_id = start_shadow_run(Path(tmp) / "B", model, station, args.sample)
            time.sleep(PICKUP_S)  # B picks the run up at its next poll
            size = json.loads((model / "model.json").read_text())["input"]["height"]
            send_in_turn(a, b, part_images(args.images, size), args.warmup, args.requests)
        finally:
            for side in sides:
                side.client.close()
                stop(side.server)  # B stores its shadow counts on the way out
        report(a, b)
        figures = store.shadow_figures(run_id)
        print(
            f"B's shadow run on station {station} ({args.sample:.0%} of parts): seen "
            f"{figures.run.seen}, shadowed {figures.shadowed}, skipped (queue full) "
            f"{figures.run.skipped}, agreement "
            f"{'-' if figures.agreement_rate is None else f'{figures.agreement_rate:.1%}'}"
        )
        store.db.close()
    return 1 if a.errors or b.errors else 0


if __name__ == "__main__":
    sys.exit(main())
