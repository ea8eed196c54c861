"""`defectlens demo`: the product end to end on generated parts, in a workspace folder.

Data, training, evaluation, the engine, then the inspection service: a station, its model, a
`line` key, and every test part sent through `POST /v1/inspect` as a line would send it.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from defectlens.demo_line import run_line_demo
from defectlens.demo_qa import show_review_queue
from defectlens.settings import load_settings

if TYPE_CHECKING:
    from defectlens.demo_mes import MesSide
    from defectlens.inference.service import ServiceSettings

STATION = "demo-line-1"
LINE = "demo-line"


def run_demo(home: Path | None = None) -> int:
    from defectlens.datasets.synthetic import generate_dataset
    from defectlens.demo_detector import run_detector_demo
    from defectlens.demo_labels import run_labels_demo
    from defectlens.inference.engine import Engine
    from defectlens.inference.reports.demo_history import run_report_demo
    from defectlens.train.pipeline import train_model
    from defectlens.train.recipe import load_recipe

    settings = load_settings(**({"home": home} if home else {}))
    workspace = settings.home
    data = workspace / "datasets" / "synthetic-parts"
    if data.exists():
        shutil.rmtree(data)
    data.parent.mkdir(parents=True, exist_ok=True)
    print(f"1/9 generating synthetic parts in {data}")
    generate_dataset(data, train_good=80, test_good=30, test_defect_per_kind=8, seed=7)

    recipe_file = resources.files("defectlens.configs") / "anomaly.yaml"
    with resources.as_file(recipe_file) as path:
        recipe = load_recipe(Path(path)).model_copy(update={"name": "demo-parts"})
    print("2/9 training (features, coreset, calibration, ONNX export, parity, evaluation)")
    version = train_model(recipe, data, settings.models_dir)
    card = json.loads((version / "model.json").read_text())
    metrics = card["metrics"]

    print("3/9 held-out evaluation of the exported ONNX model")
    for key in ("image_auroc", "pixel_auroc", "aupro", "escape_rate", "false_reject_rate"):
        value = metrics.get(key)
        print(f"    {key:<18} {value:.3f}" if isinstance(value, float) else f"    {key:<18} -")

    print("4/9 inspecting test parts with ONNX Runtime")
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

    print(f"5/9 the inspection service: station {STATION}, every test part via POST /v1/inspect")
    inspect_through_service(workspace, version, samples)
    print("6/9 the line: a camera station triggered by a PLC over Modbus TCP")
    run_line_demo(workspace, version, samples)
    print("7/9 reports: three weeks of history, the reports page, a PDF")
    run_report_demo(workspace, version)
    print("8/9 QA labels: the stored NG parts labelled, a dataset version frozen")
    run_labels_demo(workspace, STATION)
    print("9/9 the detector: defect classes on boards, trained from labelled boxes")
    run_detector_demo(workspace)
    print(f"model version: {version}")
    print(f"report:        {version / 'report' / 'index.html'}")
    show_review_queue(workspace)  # the QA pages on the parts just stored (demo_qa.py)
    return 0


def inspect_through_service(home: Path, version: Path, samples: list[Path]) -> None:
    """Set a station up from nothing (station, promoted model, `line` key), start the service
    on a free loopback port with its sinks pointed at a local MES side (`demo_mes`), send each
    sample with its station and serial, print the verdicts, latency percentiles and what the
    MES side received, and stop the service."""
    from defectlens.demo_mes import mes_side

    with mes_side() as mes:
        _inspect_with(home, version, samples, mes)


def _inspect_with(home: Path, version: Path, samples: list[Path], mes: MesSide) -> None:
    import httpx

    from defectlens.inference.service import ServiceSettings
    from defectlens.inference.service.deployments import deploy_model_dir
    from defectlens.inference.store import Store, open_database

    settings = ServiceSettings(home=home, host="127.0.0.1", port=_free_port(), **mes.settings)
    store = Store(open_database(settings.resolved_database_url))
    try:
        store.ensure_station(STATION, line=LINE, description="defectlens demo")
        deployed = deploy_model_dir(store, settings.models_dir, version, STATION, "demo")
        model = deployed.model_version
        _key_id, key = store.create_key("line", f"{STATION}-demo", actor="demo")
        print(f"    promoted {model.name} {model.version}; created a line key")

        verdicts = {"OK": 0, "NG": 0}
        correct = 0
        latencies_ms: list[float] = []
        model_ms: list[float] = []
        with (
            _running_service(settings) as url,
            httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as client,
        ):
            print(f"    service on {url}; sending {len(samples)} parts, one at a time")
            for index, path in enumerate(samples):
                image = path.read_bytes()
                metadata = {"station": STATION, "line": LINE, "serial": f"DEMO-{index:04d}"}
                start = time.perf_counter()
                response = client.post(
                    "/v1/inspect",
                    params=metadata,
                    content=image,
                    headers={"Content-Type": "image/png"},
                )
                latencies_ms.append((time.perf_counter() - start) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(
                        f"POST /v1/inspect for {path} answered {response.status_code}: "
                        f"{response.text}"
                    )
                result: dict[str, Any] = response.json()
                verdicts[result["verdict"]] += 1
                correct += (result["verdict"] == "NG") == (path.parent.name != "good")
                model_ms.append(float(result["timings_ms"]["model"]))
            deadline = time.monotonic() + 30  # the sinks' deliveries, before the service stops
            while store.list_deliveries(state="pending") and time.monotonic() < deadline:
                time.sleep(0.05)
            print("    what the MES side received:")
            mes.report(STATION)
        stored = store.verdict_counts(station=STATION)
    finally:
        store.db.close()
    print(
        f"    {len(samples)} parts: {verdicts['OK']} OK, {verdicts['NG']} NG, "
        f"{correct} verdicts match the ground truth"
    )
    print(f"    end to end  {_percentiles(latencies_ms)}")
    print(f"    model time  {_percentiles(model_ms)}")
    print(
        f"    stored results for {STATION}: {stored['total']} "
        f"({stored['OK']} OK, {stored['NG']} NG) in {store.db.url}"
    )


@contextmanager
def _running_service(settings: ServiceSettings) -> Iterator[str]:
    """The service (uvicorn, in a background thread) while the block runs; its base URL."""
    import uvicorn

    from defectlens.inference.api.app import create_app

    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="defectlens-demo-service", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the inspection service did not start; see the log above")
            time.sleep(0.05)
        yield f"http://{settings.host}:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _percentiles(values_ms: list[float]) -> str:
    ordered = sorted(values_ms)

    def at(q: int) -> float:
        # nearest rank: the smallest value with at least q % of the values at or below it
        return ordered[max(0, math.ceil(len(ordered) * q / 100) - 1)]

    return f"p50 {at(50):6.1f} ms   p95 {at(95):6.1f} ms   p99 {at(99):6.1f} ms"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
