"""The QA loop through the API: training jobs (queued, read, cancelled), shadow mode on a
live service (agreement counted, verdicts untouched, disagreements kept, the queue-full
skip), compare, promote and roll back, the audit log, and who may do each."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from api_service import STATION, Service

from defectlens.inference.service.deployments import register_model_dir

Wait = Callable[[], Any]
# kombu's SQLAlchemy transport declares a relationship SQLAlchemy 2.1 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")


def eventually(check: Wait, timeout_s: float = 60.0) -> Any:
    """`check()` once it returns something truthy; fails after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.05)


def candidate(service: Service, threshold: float | None = None, suffix: str = "ng") -> int:
    """A registered candidate: the second model version (the same graph as production), or a
    copy of the first with its threshold moved (so its verdicts differ)."""
    if threshold is None:
        return register_model_dir(service.store, service.model_dirs[1]).id
    source = service.model_dirs[0]
    target = source.parent / f"{source.name}-{suffix}"
    if not target.exists():
        shutil.copytree(source, target)
        card = json.loads((target / "model.json").read_text())
        card["version"], card["threshold"] = target.name, threshold
        (target / "model.json").write_text(json.dumps(card, indent=2))
    return register_model_dir(service.store, target).id


def shadow_of(service: Service, run_id: int) -> dict[str, Any]:
    response = service.client.get(f"/v1/shadow/{run_id}", headers=service.auth("qa"))
    assert response.status_code == 200, response.text
    return dict(response.json())


# -- who may do what ---------------------------------------------------------------------


ACTIONS = [
    ("post", "/v1/jobs", {"recipe": "anomaly", "data": "data"}),
    ("post", "/v1/jobs/1/cancel", None),
    ("post", "/v1/shadow", {"station": STATION, "model_version_id": 1}),
    ("post", "/v1/shadow/1/stop", None),
    ("post", "/v1/compare", {"station": STATION, "candidate_version_id": 1}),
    ("post", f"/v1/stations/{STATION}/promote", {"model_version_id": 1}),
    ("post", f"/v1/stations/{STATION}/rollback", None),
]
READS = ["/v1/jobs", "/v1/shadow", "/v1/compare", "/v1/audit"]


@pytest.mark.parametrize("role", ["line", "manager"])
def test_line_and_manager_keys_cannot_train_shadow_compare_or_promote(
    service: Service, role: str
) -> None:
    for method, path, body in ACTIONS:
        response = service.client.request(method, path, json=body, headers=service.auth(role))
        assert response.status_code == 403, (path, response.text)
        assert role in response.json()["detail"]


def test_manager_and_qa_read_the_loop_and_line_does_not(service: Service) -> None:
    for path in READS:
        for role in ("manager", "qa"):
            assert service.client.get(path, headers=service.auth(role)).status_code == 200, path
        assert service.client.get(path, headers=service.auth("line")).status_code == 403, path
        assert service.client.get(path).status_code == 401, path


# -- training jobs -------------------------------------------------------------------------


def test_a_job_is_queued_read_and_cancelled_with_its_audit(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(local_worker=False)  # no worker: the job waits in the queue
    data = service.settings.home / "data" / "good"
    data.mkdir(parents=True)
    qa = service.auth("qa")
    response = service.client.post(
        "/v1/jobs", json={"recipe": "anomaly", "data": "data", "station": STATION}, headers=qa
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued" and job["recipe"]["name"] == "anomaly"
    assert job["data_path"] == str(service.settings.home.resolve() / "data")

    read = service.client.get(f"/v1/jobs/{job['id']}", headers=service.auth("manager"))
    assert read.json()["status"] == "queued"
    log = service.client.get(f"/v1/jobs/{job['id']}/log", headers=qa)
    assert log.status_code == 200 and log.json()["lines"] == []

    cancelled = service.client.post(f"/v1/jobs/{job['id']}/cancel", headers=qa)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = service.client.post(f"/v1/jobs/{job['id']}/cancel", headers=qa)
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]

    audit = service.client.get("/v1/audit", params={"action": "job"}, headers=qa).json()
    assert [(e["action"], e["target"]) for e in audit] == [
        ("job.cancel", f"job:{job['id']}"),
        ("job.start", f"job:{job['id']}"),
    ]
    assert all(e["actor"].startswith("key:") for e in audit)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"recipe": "no-such-recipe", "data": "data"}, 422, "neither a shipped recipe"),
        ({"recipe": "/etc/hostname", "data": "data"}, 422, "inside the workspace"),
        ({"recipe": "anomaly", "data": "../../elsewhere"}, 422, "inside the workspace"),
        ({"recipe": "anomaly", "data": "missing"}, 422, "does not exist"),
        ({"recipe": "anomaly", "data": "data", "station": "nowhere"}, 404, "not known"),
        ({"recipe": "anomaly", "data": "data", "extra": 1}, 422, "extra"),
    ],
)
def test_a_job_with_bad_input_is_refused_naming_what(
    make_service: Callable[..., Service], body: dict[str, Any], status: int, words: str
) -> None:
    service = make_service(local_worker=False)
    (service.settings.home / "data").mkdir(exist_ok=True)
    response = service.client.post("/v1/jobs", json=body, headers=service.auth("qa"))
    assert response.status_code == status, response.text
    assert words in response.text
    assert service.store.list_jobs() == []


# -- shadow mode ---------------------------------------------------------------------------


def test_shadow_counts_agreement_without_touching_verdicts(
    service: Service, part_images: dict[str, list[Path]]
) -> None:
    same = candidate(service)
    qa = service.auth("qa")
    started = service.client.post(
        "/v1/shadow", json={"station": STATION, "model_version_id": same}, headers=qa
    )
    assert started.status_code == 201, started.text
    run = started.json()
    assert run["active"] and run["sample_fraction"] == 1.0

    production = service.store.active_deployment(STATION)
    assert production is not None
    answers = [service.inspect(path.read_bytes()) for path in part_images["good"][:3]]
    assert all(a.status_code == 200 for a in answers)
    for answer in answers:  # the line's answer is the production model's
        assert answer.json()["model"]["version"] == production.model_version.version

    figures = eventually(lambda: (f := shadow_of(service, run["id"]))["shadowed"] == 3 and f)
    assert figures["agreed"] == 3 and figures["agreement_rate"] == 1.0
    assert figures["disagreements"] == []
    assert figures["run"]["seen"] == 3 and figures["run"]["skipped"] == 0
    stored = service.client.get(f"/v1/results/{answers[0].json()['result_id']}", headers=qa).json()
    assert stored["model"]["version"] == production.model_version.version

    stopped = service.client.post(f"/v1/shadow/{run['id']}/stop", headers=qa)
    assert stopped.status_code == 200 and not stopped.json()["active"]
    assert service.inspect(part_images["good"][0].read_bytes()).status_code == 200
    assert shadow_of(service, run["id"])["run"]["seen"] == 3  # nothing after the stop
    actions = [e.action for e in service.store.audit_entries(action="shadow")]
    assert actions == ["shadow.stop", "shadow.start"]


def test_a_disagreement_is_listed_and_its_image_kept(
    make_service: Callable[..., Service], part_images: dict[str, list[Path]]
) -> None:
    service = make_service(keep_ok_fraction=0.0)  # the line keeps no OK image itself
    rejects_all = candidate(service, threshold=0.0)  # every score is at or above 0: NG
    qa = service.auth("qa")
    run = service.client.post(
        "/v1/shadow", json={"station": STATION, "model_version_id": rejects_all}, headers=qa
    ).json()
    answer = service.inspect(part_images["train"][0].read_bytes()).json()
    assert answer["verdict"] == "OK" and answer["image_url"] is None

    figures = eventually(lambda: (f := shadow_of(service, run["id"]))["shadowed"] == 1 and f)
    assert figures["agreed"] == 0 and figures["candidate_ng_production_ok"] == 1
    [disagreement] = figures["disagreements"]
    assert disagreement["result_id"] == answer["result_id"]
    assert disagreement["production_verdict"] == "OK" and disagreement["candidate_verdict"] == "NG"
    image = service.client.get(f"/v1/results/{answer['result_id']}/image", headers=qa)
    assert image.status_code == 200 and image.content == part_images["train"][0].read_bytes()
    result = service.client.get(f"/v1/results/{answer['result_id']}", headers=qa).json()
    assert result["verdict"] == "OK"  # the line's verdict stands
    assert result["image_url"] == f"/v1/results/{answer['result_id']}/image"
    # kept from retention as a label's image is
    assert service.store.apply_retention(service.settings.images_dir, 0, 0)["deleted"] == 0


def test_a_full_shadow_queue_skips_parts_and_never_holds_the_line(
    make_service: Callable[..., Service], part_images: dict[str, list[Path]]
) -> None:
    service = make_service(shadow_queue_size=1)
    runner = service.client.app.state.service.shadow  # type: ignore[attr-defined]
    entered, release = threading.Event(), threading.Event()
    real = runner._shadow

    def held(part: Any) -> None:  # the shadow thread stuck on a part, as a slow model would be
        entered.set()
        release.wait(30)
        real(part)

    runner._shadow = held
    run = service.client.post(
        "/v1/shadow",
        json={"station": STATION, "model_version_id": candidate(service)},
        headers=service.auth("qa"),
    ).json()
    good = part_images["good"][0].read_bytes()
    assert service.inspect(good).status_code == 200
    assert entered.wait(30)  # part 1 is being shadowed
    answers = [service.inspect(good) for _ in range(3)]  # part 2 waits, parts 3 and 4 skip
    assert [a.status_code for a in answers] == [200, 200, 200]
    release.set()
    figures = eventually(lambda: (f := shadow_of(service, run["id"]))["shadowed"] == 2 and f)
    assert figures["run"]["seen"] == 4 and figures["run"]["skipped"] == 2


def test_shadow_refuses_the_production_model_and_a_second_run(service: Service) -> None:
    qa = service.auth("qa")
    production = service.store.active_deployment(STATION)
    assert production is not None
    same = service.client.post(
        "/v1/shadow",
        json={"station": STATION, "model_version_id": production.model_version.id},
        headers=qa,
    )
    assert same.status_code == 409 and "production" in same.json()["detail"]
    body = {"station": STATION, "model_version_id": candidate(service), "sample_fraction": 0.5}
    assert service.client.post("/v1/shadow", json=body, headers=qa).status_code == 201
    second = service.client.post("/v1/shadow", json=body, headers=qa)
    assert second.status_code == 409 and "stop it first" in second.json()["detail"]
    wrong = service.client.post("/v1/shadow", json={**body, "sample_fraction": 1.5}, headers=qa)
    assert wrong.status_code == 422


# -- compare, promote, roll back ------------------------------------------------------------


def test_compare_on_labelled_parts_then_promote_and_roll_back(
    make_service: Callable[..., Service], part_images: dict[str, list[Path]]
) -> None:
    service = make_service(keep_ok_fraction=1.0)
    qa = service.auth("qa")
    labelled = {}
    for path in part_images["good"][:3] + part_images["scratch"][:2]:
        result = service.inspect(path.read_bytes()).json()
        label = "OK" if path.parent.name == "good" else "NG"
        service.store.add_label(result["result_id"], label, "test-qa")
        labelled[result["result_id"]] = label
    rejects_all = candidate(service, threshold=0.0)

    started = service.client.post(
        "/v1/compare", json={"station": STATION, "candidate_version_id": rejects_all}, headers=qa
    )
    assert started.status_code == 202, started.text
    comparison_id = started.json()["id"]

    def finished() -> dict[str, Any] | None:
        found = service.client.get(f"/v1/compare/{comparison_id}", headers=qa).json()
        return found if found["status"] != "running" else None

    comparison = eventually(finished, timeout_s=120)
    assert comparison["status"] == "succeeded", comparison["error"]
    assert comparison["done"] == comparison["total"] == 5
    figures = comparison["figures"]
    assert (figures["parts"], figures["good"], figures["defective"]) == (5, 3, 2)
    candidate_figures = figures["candidate"]
    assert candidate_figures["false_reject_rate"] == 1.0 and candidate_figures["escape_rate"] == 0.0
    production_ok = [r for r, label in labelled.items() if label == "OK"]
    changed = {c["part"] for c in figures["changed"]}
    assert changed >= set(production_ok)  # every good part the candidate now rejects
    shown = sorted(changed)[0]
    image = service.client.get(
        f"/v1/compare/{comparison_id}/image", params={"part": shown}, headers=qa
    )
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    unlisted = service.client.get(
        f"/v1/compare/{comparison_id}/image", params={"part": "../defectlens.db"}, headers=qa
    )
    assert unlisted.status_code == 404
    svg = service.client.get(f"/v1/compare/{comparison_id}/roc.svg", headers=qa)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert service.client.get("/v1/compare", headers=service.auth("manager")).json()[0]["id"] == (
        comparison_id
    )

    # promote the other candidate (the same graph), and the line answers with it
    same = candidate(service)
    promoted = service.client.post(
        f"/v1/stations/{STATION}/promote", json={"model_version_id": same}, headers=qa
    )
    assert promoted.status_code == 200, promoted.text
    version = service.store.get_model_version(same)
    assert version is not None
    answer = service.inspect(part_images["good"][0].read_bytes()).json()
    assert answer["model"]["version"] == version.version
    rolled = service.client.post(f"/v1/stations/{STATION}/rollback", headers=qa)
    assert rolled.status_code == 200
    back = service.inspect(part_images["good"][0].read_bytes()).json()
    assert back["model"]["version"] != version.version

    audit = service.client.get(
        "/v1/audit", params={"station": STATION}, headers=service.auth("manager")
    ).json()
    assert [e["action"] for e in audit][:3] == ["rollback", "promote", "compare.start"]
    page = service.client.get(
        "/v1/audit", params={"before_id": audit[0]["id"], "limit": 1}, headers=qa
    ).json()
    assert [e["id"] for e in page] == [audit[1]["id"]]


def test_compare_without_labelled_parts_says_so(service: Service) -> None:
    response = service.client.post(
        "/v1/compare",
        json={"station": STATION, "candidate_version_id": candidate(service)},
        headers=service.auth("qa"),
    )
    assert response.status_code == 422 and "label parts first" in response.json()["detail"]


def test_a_dataset_version_gives_anomaly_recipes_its_good_parts_and_detectors_its_coco(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(local_worker=False)
    home, qa = service.settings.home, service.auth("qa")
    version = home / "datasets" / "panel" / "3fa2c1d4e5f6"
    (version / "good").mkdir(parents=True)
    (version / "manifest.json").write_text("{}")
    (home / "detector.yaml").write_text("name: boxes\nfamily: detection\n")
    body = {"recipe": "anomaly", "data": "datasets/panel/3fa2c1d4e5f6"}
    anomaly = service.client.post("/v1/jobs", json=body, headers=qa)
    assert anomaly.status_code == 202 and anomaly.json()["data_path"] == str(
        version.resolve() / "good"
    )
    detector = service.client.post("/v1/jobs", json={**body, "recipe": "detector.yaml"}, headers=qa)
    assert detector.status_code == 422 and "no coco.json" in detector.json()["detail"]
    (version / "coco.json").write_text("{}")
    detector = service.client.post("/v1/jobs", json={**body, "recipe": "detector.yaml"}, headers=qa)
    assert detector.json()["data_path"] == str(version.resolve() / "coco.json")


def test_compare_on_a_dataset_folder_runs_its_test_images(
    service: Service, synthetic_data: Path
) -> None:
    shutil.copytree(synthetic_data, service.settings.home / "data" / "parts")
    qa = service.auth("qa")
    body = {
        "station": STATION,
        "candidate_version_id": candidate(service),
        "source": "dataset",
        "data": "data/parts",
    }
    started = service.client.post("/v1/compare", json=body, headers=qa)
    assert started.status_code == 202, started.text

    def finished() -> dict[str, Any] | None:
        found = service.client.get(f"/v1/compare/{started.json()['id']}", headers=qa).json()
        return found if found["status"] != "running" else None

    comparison = eventually(finished, timeout_s=180)
    assert comparison["status"] == "succeeded", comparison["error"]
    assert comparison["source"] == "dataset:data/parts"
    figures = comparison["figures"]
    tests = list((synthetic_data / "test").rglob("*.png"))
    assert figures["parts"] == len(tests)
    assert figures["defective"] == len([p for p in tests if p.parent.name != "good"])
    # the candidate is the same graph: the same figures, no verdict changed
    assert figures["production"]["auroc"] == figures["candidate"]["auroc"] > 0.5
    assert figures["changed_count"] == 0
