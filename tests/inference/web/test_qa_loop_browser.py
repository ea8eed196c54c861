"""The QA engineer's loop end to end in a real browser: Playwright drives Debian's chromium
(by its executable path; nothing is downloaded) against a real `defectlens serve` with the
session's small model on station s1 and parts posted by the line: sign in, open the queue,
label a part OK, draw a box on another, freeze a dataset, start a retrain on a tiny
generated set and watch it finish, compare the model it made with production, run it in
shadow on a few parts, promote it from the compare page, and see the service answer with
the new version; the audit page shows who did it. A screenshot of each page, in English and
Chinese, is saved under build/test-artifacts/pages/.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from defectlens.datasets.synthetic import generate_dataset
from defectlens.inference.service.deployments import register_model_dir
from defectlens.inference.store import Store, open_database

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[3] / "build" / "test-artifacts" / "pages"
STATION = "s1"
pytestmark = pytest.mark.slow  # a retrain runs in the service's training worker


@dataclass
class Running:
    url: str
    keys: dict[str, str]
    version: int
    """The model version s1 runs at the start."""

    def post_part(self, image: bytes, serial: str) -> dict[str, object]:
        answer = httpx.post(
            f"{self.url}/v1/inspect",
            params={"station": STATION, "serial": serial},
            content=image,
            headers={"X-API-Key": self.keys["line"], "Content-Type": "image/png"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        result: dict[str, object] = answer.json()
        return result

    def get(self, path: str, role: str = "qa") -> object:
        answer = httpx.get(f"{self.url}{path}", headers={"X-API-Key": self.keys[role]}, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def running(tmp_path: Path, trained_model: Path, small_recipe: Path) -> Iterator[Running]:
    """`defectlens serve` on a fresh workspace: s1 runs the session's small model, a key per
    role, every OK image kept (to label them); a tiny recipe (64 px) under recipes/ and tiny
    generated parts under data/, for a retrain that takes seconds."""
    home = tmp_path / "home"
    copy = Path(shutil.copytree(trained_model, home / "models" / "test-parts" / trained_model.name))
    recipe = yaml.safe_load(small_recipe.read_text())
    recipe.update(name="retrained", image_size=64)
    recipe["threshold"] = {"policy": "target_frr", "target": 0.2, "good_holdout": 0.15}
    (home / "recipes").mkdir()
    (home / "recipes" / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    generate_dataset(
        home / "data", train_good=12, test_good=4, test_defect_per_kind=1, size=64, seed=1
    )
    store = Store(open_database(f"sqlite:///{home / 'defectlens.db'}"))
    store.ensure_station(STATION, line="L1")
    version = register_model_dir(store, copy).id
    store.promote(STATION, version, actor="setup")
    keys = {role: store.create_key(role, f"e2e-{role}")[1] for role in ("qa", "line")}
    store.db.close()
    port = _free_port()
    env = {
        **os.environ,
        "DEFECTLENS_HOME": str(home),
        "DEFECTLENS_PORT": str(port),
        "DEFECTLENS_KEEP_OK_FRACTION": "1.0",
        "DEFECTLENS_DEPLOYMENT_POLL_S": "0.5",
        "DEFECTLENS_KEY_CACHE_S": "0",
        "DEFECTLENS_LOG_FORMAT": "text",
    }
    log = tmp_path / "serve.log"
    binary = str(Path(sys.executable).with_name("defectlens"))
    with log.open("wb") as out:
        process = subprocess.Popen([binary, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"serve did not start: {log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield Running(url, keys, version)
    finally:
        process.terminate()
        process.wait(30)


def test_the_qa_loop_in_a_real_browser(
    running: Running, part_images: dict[str, list[Path]]
) -> None:
    if not Path(CHROMIUM).exists():
        message = "no chromium: apt-get install chromium (or `bash scripts/dev.sh setup`)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    defect_kinds = [k for k in part_images if k not in ("train", "good")]
    ng = running.post_part(part_images[defect_kinds[0]][0].read_bytes(), "SN-NG-1")
    ok = running.post_part(part_images["train"][0].read_bytes(), "SN-OK-1")
    assert (ng["verdict"], ok["verdict"]) == ("NG", "OK")

    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))

        def shot(name: str) -> None:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

        # Sign in: the queue redirects there first.
        page.goto(f"{running.url}/review")
        assert "/signin?next=" in page.url
        shot("signin-en")
        page.fill("#key", running.keys["qa"])
        page.click("#signin-submit")
        page.wait_for_url(f"{running.url}/review")

        # The queue: the NG part first (it has the most to teach), the OK part after it.
        tiles = page.locator("#gallery li")
        assert tiles.nth(0).get_attribute("data-result") == ng["result_id"]
        assert ok["result_id"] in [tiles.nth(i).get_attribute("data-result") for i in range(2)]
        shot("review-en")
        page.goto(f"{running.url}/review?lang=zh")
        shot("review-zh")
        page.goto(f"{running.url}/review?lang=en")

        # Label the OK part OK with the keyboard: O, then Enter (save and next).
        page.goto(f"{running.url}/review/{ok['result_id']}")
        page.wait_for_selector("#labeller[data-ready=true]")
        shot("label-en")
        page.keyboard.press("o")
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: ok["result_id"] not in url)
        labelled = running.get("/v1/review?order=newest&labelled=true")
        assert [(i["result_id"], i["label"]) for i in labelled["items"]] == [  # type: ignore[index]
            (ok["result_id"], "OK")
        ]

        # Draw a box on the NG part, with the model's overlay shown, and save it.
        page.goto(f"{running.url}/review/{ng['result_id']}")
        page.wait_for_selector("#labeller[data-ready=true]")
        page.keyboard.press("h")
        page.keyboard.press("b")
        box = page.locator("#canvas").bounding_box()
        assert box is not None
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x - 60, y - 40)
        page.mouse.down()
        page.mouse.move(x + 50, y + 45, steps=5)
        page.mouse.up()
        assert "[" in page.locator("#regions").inner_text()
        shot("label-box-en")
        page.goto(f"{running.url}/review/{ng['result_id']}?lang=zh")
        page.wait_for_selector("#labeller[data-ready=true]")
        page.keyboard.press("b")
        page.mouse.move(x - 60, y - 40)
        page.mouse.down()
        page.mouse.move(x + 50, y + 45, steps=5)
        page.mouse.up()
        # And paint the crack with the brush: a mask of the first class, beside the box.
        page.keyboard.press("1")
        page.keyboard.press("m")
        page.mouse.move(x - 30, y + 60)
        page.mouse.down()
        page.mouse.move(x + 30, y + 80, steps=8)
        page.mouse.up()
        shot("label-box-zh")
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: ng["result_id"] not in url)
        page.goto(f"{running.url}/review?lang=en")
        samples = running.get("/v1/labels/samples?labelled=true")
        regions = {
            s["result_id"]: s["label"]["regions"]  # type: ignore[index]
            for s in samples["items"]  # type: ignore[index]
        }
        assert regions[ok["result_id"]] == []
        drawn, painted = regions[ng["result_id"]]
        x0, y0, x1, y1 = drawn["box"]
        assert x1 - x0 > 5 and y1 - y0 > 5 and drawn["mask_sha256"] is None
        assert painted["mask_sha256"] is not None  # the brush's PNG, kept by the label store
        x0, y0, x1, y1 = painted["box"]
        assert x1 - x0 > 5 and y1 - y0 > 5

        # Freeze a dataset version of the labels.
        page.goto(f"{running.url}/datasets")
        page.fill("#freeze input[name=name]", "e2e")
        page.click("#freeze-submit")
        page.wait_for_selector("#versions tr[data-version]")
        shot("datasets-en")
        page.goto(f"{running.url}/datasets?lang=zh")
        shot("datasets-zh")

        # Start a retrain on the tiny set and watch it finish, live.
        page.goto(f"{running.url}/jobs?lang=en")
        page.fill("#start-job input[name=recipe]", "recipes/tiny.yaml")
        page.fill("#start-job input[name=data]", "data")
        page.select_option("#start-job select[name=station]", STATION)
        page.click("#start-job-submit")
        page.wait_for_selector("#jobs [data-status=queued], #jobs [data-status=running]")
        page.wait_for_selector(
            "#jobs [data-status=succeeded], #jobs [data-status=failed]", timeout=300_000
        )
        job = running.get("/v1/jobs")[0]  # type: ignore[index]
        assert job["status"] == "succeeded", job["error"]
        page.wait_for_function("document.getElementById('log').textContent.length > 40")
        shot("jobs-en")
        page.goto(f"{running.url}/jobs?lang=zh")
        page.wait_for_selector("#jobs [data-status=succeeded]")
        shot("jobs-zh")
        candidate = job["model_version_id"]
        assert candidate is not None and candidate != running.version
        # A second retrain, cancelled from the page: it stops and says so.
        page.goto(f"{running.url}/jobs?lang=en")
        page.fill("#start-job input[name=recipe]", "recipes/tiny.yaml")
        page.fill("#start-job input[name=data]", "data")
        page.click("#start-job-submit")
        page.wait_for_selector("#jobs [data-cancel]")
        page.click("#jobs [data-cancel]")
        page.wait_for_selector("#jobs [data-status=cancelled]", timeout=120_000)
        assert running.get("/v1/jobs")[0]["status"] == "cancelled"  # type: ignore[index]

        # Compare the new model with production on the station's labelled parts.
        page.goto(f"{running.url}/compare?lang=en")
        page.select_option("#compare select[name=candidate_version_id]", str(candidate))
        page.click("#compare-submit")
        page.wait_for_selector("#compare-figures")
        # Each part whose verdict changed shows its image (served by the comparison).
        page.wait_for_function(
            "[...document.querySelectorAll('#compare-changed img')].every(i => i.complete)"
        )
        assert page.evaluate(
            "[...document.querySelectorAll('#compare-changed img')].every(i => i.naturalWidth > 0)"
        )
        shot("compare-en")

        # Shadow: the candidate beside s1's model on a few live parts; agreement and
        # disagreements on the page, then promote it from there.
        page.select_option("#shadow select[name=model_version_id]", str(candidate))
        page.click("#shadow-submit")
        page.wait_for_selector("#shadow-agreement")
        for n, image in enumerate(part_images["good"][:3]):
            running.post_part(image.read_bytes(), f"SN-SH-{n}")
        deadline = time.monotonic() + 60
        while True:
            page.reload()
            page.wait_for_selector("#shadow-agreement")
            text = page.locator("#shadow-agreement").inner_text()
            if text.startswith("3 parts shadowed"):
                break  # the tiny model may disagree: each disagreement is a part to label

            assert time.monotonic() < deadline, text
            time.sleep(0.5)
        shot("shadow-en")
        page.goto(f"{running.url}/compare?lang=zh")
        page.wait_for_selector("#shadow-agreement")
        shot("compare-zh")
        page.goto(f"{running.url}/compare?lang=en")
        page.wait_for_selector("#shadow-promote")
        page.click("#shadow-promote")
        page.wait_for_selector("#notice:not([hidden])")
        assert "now runs" in page.locator("#notice").inner_text()

        # The service answers with the new version.
        served = running.post_part(part_images["train"][1].read_bytes(), "SN-AFTER")
        promoted = running.get("/v1/models")
        by_id = {v["id"]: v for v in promoted}  # type: ignore[union-attr]
        assert served["model"]["version"] == by_id[candidate]["version"]  # type: ignore[index]

        # The models page: the history, and a roll back to the model before.
        page.goto(f"{running.url}/models")
        shot("models-en")
        before = page.locator("[data-station=s1] .active-version").inner_text()
        with page.expect_navigation():  # the page shows the new state once done
            page.click("[data-station=s1] .rollback")
        after = page.locator("[data-station=s1] .active-version").inner_text()
        first = running.get("/v1/models")[-1]  # newest first: the one it started with
        assert (before, after) == (by_id[candidate]["version"], first["version"])  # type: ignore[index]
        assert first["stations"] == [STATION]  # type: ignore[index]

        # The audit page says who did what.
        page.goto(f"{running.url}/audit")
        audit = page.locator("#audit").inner_text()
        actions = ("promote", "rollback", "shadow.start", "job.start", "job.cancel", "compare")
        for action in actions:
            assert action in audit, action
        assert "(e2e-qa)" in audit  # the actor's key by its name
        shot("audit-en")
        page.goto(f"{running.url}/audit?lang=zh")
        shot("audit-zh")
        browser.close()
    assert errors == [], errors
