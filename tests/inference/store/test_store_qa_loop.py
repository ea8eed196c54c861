"""The QA loop's rows on both databases: training jobs claimed once and finished once,
shadow answers counted in SQL against hand-counted figures (and a disagreement's image kept),
labelled parts for compare, stale comparisons failed, the audit log's filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from store_factories import make_result

from defectlens.errors import Conflict, NotFound
from defectlens.inference.store import Store, StoredImage
from defectlens.inference.store.jobs import JobProgress
from defectlens.inference.store.shadow import ShadowAnswer


def version(store: Store, name: str = "v1") -> int:
    return store.register_model_version("m", name, "anomaly", f"/m/{name}", "0" * 64, {})


def answer(result_id: str, candidate: str, production: str) -> ShadowAnswer:
    return ShadowAnswer(result_id, candidate, 0.9 if candidate == "NG" else 0.1, 0.5, [],
                        production, 0.8 if production == "NG" else 0.2, 3.0)  # fmt: skip


def test_a_job_is_claimed_once_reports_and_finishes(store: Store) -> None:
    job = store.create_job("anomaly", {"name": "a"}, "data", "/w/data", None, "key:1")
    assert store.claim_job(job.id, "host:1") is not None
    assert store.claim_job(job.id, "host:2") is None  # a message delivered twice runs once
    assert store.report_progress(job.id, JobProgress("fit", 10.0, None, "x\x00y")) is False
    assert store.get_job(job.id).log_tail == "xy"
    assert store.request_cancel(job.id, "key:2").status == "running"
    assert store.report_progress(job.id, JobProgress(percent=250.0)) is True  # cancel asked
    assert store.get_job(job.id).percent == 100.0
    done = store.finish_job(job.id, "cancelled", error="stopped")
    assert done.status == "cancelled" and done.finished_at is not None
    with pytest.raises(Conflict, match="already cancelled"):
        store.request_cancel(job.id, "key:2")
    with pytest.raises(NotFound):
        store.get_job(job.id + 1)
    assert [e.action for e in store.audit_entries(action="job")] == ["job.cancel", "job.start"]


def test_shadow_figures_match_a_hand_count(store: Store, tmp_path: Path) -> None:
    store.ensure_station("S1")
    run = store.start_shadow_run(
        "S1", version(store), 0.5, datetime.now(UTC) + timedelta(hours=1), "k"
    )
    pairs = [("OK", "OK"), ("NG", "NG"), ("NG", "OK"), ("OK", "NG"), ("NG", "OK")]
    results = [make_result(n, verdict=production) for n, (_, production) in enumerate(pairs)]
    for result in results:
        store.save_result(result, [StoredImage("image", f"{result.result_id}.png", 10)])
    for result, (candidate, production) in zip(results, pairs, strict=True):
        store.save_shadow_answer(run.id, answer(result.result_id, candidate, production))
    store.count_shadow_parts(run.id, seen=9, skipped=2)
    figures = store.shadow_figures(run.id)
    assert (figures.shadowed, figures.agreed) == (5, 2)
    assert figures.candidate_ng_production_ok == 2 and figures.candidate_ok_production_ng == 1
    assert figures.agreement_rate == pytest.approx(0.4)
    assert [d.result_id for d in figures.disagreements] == [
        results[4].result_id, results[3].result_id, results[2].result_id
    ]  # fmt: skip
    assert (figures.run.seen, figures.run.skipped) == (9, 2)
    # the disagreements' images are kept from retention; the agreements' are not
    assert store.apply_retention(tmp_path, 0, 0)["deleted"] == 2


def test_a_shadow_run_per_station_at_a_time(store: Store) -> None:
    store.ensure_station("S1")
    until = datetime.now(UTC) + timedelta(hours=1)
    run = store.start_shadow_run("S1", version(store), 1.0, until, "k")
    with pytest.raises(Conflict, match="stop it first"):
        store.start_shadow_run("S1", version(store, "v2"), 1.0, until, "k")
    assert [r.id for r in store.active_shadow_runs()] == [run.id]
    assert not store.stop_shadow_run(run.id, "k2").active
    assert store.active_shadow_runs() == []
    store.stop_shadow_run(run.id, "k3")  # already stopped: nothing more recorded
    assert [(e.action, e.actor) for e in store.audit_entries(action="shadow")] == [
        ("shadow.stop", "k2"), ("shadow.start", "k")
    ]  # fmt: skip
    with pytest.raises(NotFound):
        store.start_shadow_run("nowhere", 1, 1.0, until, "k")


def test_labelled_results_are_the_standing_labels_of_the_station(store: Store) -> None:
    first, second, other = make_result(0), make_result(1), make_result(2, station="S2")
    for result in (first, second, other):
        store.save_result(result)
    label = store.add_label(first.result_id, "NG", "qa")
    store.add_label(first.result_id, "OK", "qa", overrides_label_id=label)  # a correction
    store.add_label(other.result_id, "NG", "qa")
    found = store.labelled_results("S1", 10)
    assert [(r, label) for r, _, label in found] == [(first.result_id, "OK")]


def test_stale_comparisons_are_failed(store: Store) -> None:
    store.ensure_station("S1")
    running = store.create_comparison("S1", version(store), 1, "labels", "k")
    assert store.fail_stale_comparisons(datetime.now(UTC) - timedelta(hours=1)) == 0
    assert store.fail_stale_comparisons(datetime.now(UTC) + timedelta(seconds=1)) == 1
    failed = store.get_comparison(running.id)
    assert failed.status == "failed" and "stopped" in (failed.error or "")


def test_the_audit_log_filters(store: Store) -> None:
    job = store.create_job("anomaly", {}, "d", "/d", None, "key:1")
    store.request_cancel(job.id, "key:2")
    assert [e.actor for e in store.audit_entries(actor="key:2")] == ["key:2"]
    assert store.audit_entries(action="job.start")[0].target == f"job:{job.id}"
    assert store.audit_entries(action="jo") == []  # a prefix only at a dot
    newest = store.audit_entries()[0]
    assert [e.id for e in store.audit_entries(before_id=newest.id)] == [newest.id - 1]
    assert store.audit_entries(since=datetime.now(UTC) + timedelta(minutes=1)) == []
