"""Time the labelling page's canvas on a large image in headless Chromium: what one drawn
frame costs while zooming, panning and painting with the brush, and the pointer handling of
a pan, a box and a brush stroke, read from the page's own User Timing entries
(`performance.measure` in inference/web/static/label.js), and the time between two drawn
frames while the pointer moves.

    python scripts/label_canvas_speed.py [--width 2592 --height 1944] [--repeat 3]

A workspace in a temporary folder gets one stored result whose kept image is a generated
picture of the given size (default 2592x1944, 5.0 megapixels); the service runs in this
process; Playwright drives Debian's chromium (/usr/bin/chromium, software rendering: no GPU
here, so the figures are an upper bound of what a plant's PC shows). Each run opens the page
afresh; the median and the worst of the runs' p50/p95 are printed, per action.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import uvicorn
from playwright.sync_api import Page, sync_playwright

from defectlens.inference.api.app import create_app
from defectlens.inference.service import ServiceSettings
from defectlens.inference.service.images import image_path
from defectlens.inference.store import Store, new_result_id, open_database
from defectlens.result import InspectionResult

STATION = "big-cam"
ACTIONS = ("label-frame", "label-pan", "label-box", "label-stroke", "frame-interval")
"""The script's work per drawn frame, per pointer event of a pan, a box and a brush stroke,
and the time between two drawn frames while the pointer moves (what the eye sees: it holds
the browser's own raster and compositing too, which the script's time does not)."""


def big_image(width: int, height: int) -> bytes:
    """A part-like picture: brushed metal, holes, a scratch; PNG."""
    rng = np.random.default_rng(5)
    metal = (150 + rng.normal(0, 12, (height, 1)) + rng.normal(0, 6, (height, width))).clip(0, 255)
    picture = cv2.cvtColor(metal.astype(np.uint8), cv2.COLOR_GRAY2BGR)
    for row in range(3):
        for col in range(4):
            centre = (int(width * (col + 0.5) / 4), int(height * (row + 0.5) / 3))
            cv2.circle(picture, centre, min(width, height) // 14, (40, 40, 40), -1)
    cv2.line(
        picture, (width // 3, height // 3), (width // 3 + 300, height // 3 + 120), (20, 20, 20), 9
    )
    ok, encoded = cv2.imencode(".png", picture)
    assert ok
    return bytes(encoded.tobytes())


def workspace(home: Path, width: int, height: int) -> tuple[ServiceSettings, str, str]:
    """A service's settings with one stored NG result and its big image; a qa key."""
    settings = ServiceSettings(home=home, host="127.0.0.1", log_level="WARNING")
    received = datetime.now(UTC)
    result = InspectionResult.model_validate(
        {
            "result_id": new_result_id(received),
            "verdict": "NG",
            "score": 0.8,
            "threshold": 0.5,
            "defects": [
                {
                    "class": "scratch",
                    "score": 0.8,
                    "box": (width // 3, height // 3, width // 3 + 300, height // 3 + 120),
                    "area_px": 2000,
                }
            ],
            "timings_ms": {"total": 1.0},
            "model": {"name": "speed", "version": "v1"},
            "station": STATION,
            "received_at": received,
        }
    )
    data = big_image(width, height)
    path = image_path(settings.images_dir, result.result_id, received, ".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    with open_database(settings.resolved_database_url) as database:
        store = Store(database)
        store.ensure_station(STATION)
        store.save_result(
            result,
            images=[("image", path.relative_to(settings.images_dir).as_posix(), len(data))],
        )
        _id, key = store.create_key("qa", "speed")
    return settings, result.result_id, key


def one_run(page: Page, url: str, result_id: str) -> dict[str, list[float]]:
    """Open the labelling page, zoom, pan, draw a box and paint; each action's times, ms."""
    page.goto(f"{url}/review/{result_id}")
    page.wait_for_selector("#labeller[data-ready=true]")
    page.evaluate("performance.clearMeasures()")
    box = page.locator("#canvas").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    for _ in range(20):  # zoom in around the pointer, a frame each
        page.mouse.wheel(0, -120)
        page.wait_for_timeout(20)
    page.keyboard.press("p")  # pan
    page.mouse.down()
    page.mouse.move(x + 300, y + 200, steps=40)
    page.mouse.up()
    page.keyboard.press("f")
    page.keyboard.press("b")  # a box
    page.mouse.move(x - 100, y - 80)
    page.mouse.down()
    page.mouse.move(x + 100, y + 80, steps=30)
    page.mouse.up()
    page.keyboard.press("1")
    page.keyboard.press("m")  # the brush, on the image at full resolution
    page.mouse.move(x - 200, y)
    page.mouse.down()
    page.mouse.move(x + 200, y + 60, steps=60)
    page.mouse.up()
    page.wait_for_timeout(100)
    entries = page.evaluate(
        "performance.getEntriesByType('measure').map(e => [e.name, e.startTime, e.duration])"
    )
    times: dict[str, list[float]] = {action: [] for action in ACTIONS}
    frames = []
    for name, start, duration in entries:
        if name in times:
            times[name].append(float(duration))
        if name == "label-frame":
            frames.append(float(start))
    gaps = [b - a for a, b in itertools.pairwise(frames)]
    times["frame-interval"] = [gap for gap in gaps if gap < 250]  # not the pauses between actions
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=2592)
    parser.add_argument("--height", type=int, default=1944)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dl-canvas-") as folder:
        settings, result_id, key = workspace(Path(folder), args.width, args.height)
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        runs: list[dict[str, list[float]]] = []
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{url}/signin")
            page.fill("#key", key)
            page.click("#signin-submit")
            page.wait_for_url(f"{url}/review")
            for _ in range(args.repeat):
                runs.append(one_run(page, url, result_id))
            browser.close()
        server.should_exit = True
        thread.join(10)
    megapixels = args.width * args.height / 1e6
    print(f"labelling canvas, {args.width}x{args.height} ({megapixels:.1f} MP), {args.repeat} runs")
    print(f"{'action':<14} {'events':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for action in ACTIONS:
        p50 = [percentile(run[action], 0.5) for run in runs if run[action]]
        p95 = [percentile(run[action], 0.95) for run in runs if run[action]]
        worst = max((max(run[action]) for run in runs if run[action]), default=0.0)
        events = sum(len(run[action]) for run in runs) // max(1, len(runs))
        print(
            f"{action:<14} {events:>7} {statistics.median(p50):>8.2f} "
            f"{statistics.median(p95):>8.2f} {worst:>8.2f}"
        )


if __name__ == "__main__":
    main()
