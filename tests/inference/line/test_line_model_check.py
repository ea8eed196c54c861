"""The stations file's `model:` against the promoted deployment at start: promoted when the
station has none, a warning (and the promoted model kept) when they differ, a clear error
for a version that does not exist."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from defectlens.errors import InputError
from defectlens.inference.line.model_check import ACTOR
from defectlens.inference.line.runner import LineRunner
from defectlens.inference.line.stations import LineConfig
from defectlens.inference.service.core import InspectionService


def _start(service: InspectionService, folder: Path, **stations: str) -> LineRunner:
    config = LineConfig.model_validate(
        {
            "stations": [
                {"id": sid, "model": model, "source": {"kind": "simulated", "folder": str(folder)}}
                for sid, model in stations.items()
            ]
        }
    )
    runner = LineRunner(service, config, folder / "stations.yaml")
    runner.start()
    return runner


def _promoted(service: InspectionService) -> Any:
    active = service.store.active_model("s1")
    assert active is not None
    return active


def _second_version(service: InspectionService) -> str:
    """A copy of the promoted version under another version name, in the models folder."""
    first = Path(_promoted(service).path)
    second = first.parent / f"{first.name}-b"
    shutil.copytree(first, second)
    card = json.loads((second / "model.json").read_text())
    card["version"] = second.name
    (second / "model.json").write_text(json.dumps(card))
    return f"{card['name']}/{second.name}"


def test_a_station_without_a_model_gets_the_one_the_file_names(
    service: InspectionService, good_images: Path
) -> None:
    named = _second_version(service)  # in the models folder, not registered yet
    line = _start(service, good_images, s2=named)
    line.stop()
    deployment = service.store.active_deployment("s2")
    assert deployment is not None and deployment.promoted_by == ACTOR
    version = deployment.model_version
    assert f"{version.name}/{version.version}" == named
    assert service.registry.get("s2").card.version == version.version  # loaded, serving
    assert line.statuses()[0].warnings == []


def test_a_station_running_another_model_keeps_it_and_is_warned(
    service: InspectionService, good_images: Path
) -> None:
    before = _promoted(service)
    named = _second_version(service)
    line = _start(service, good_images, s1=named)
    line.stop()
    assert _promoted(service).id == before.id  # nothing swapped behind QA's back
    (warning,) = line.statuses()[0].warnings
    assert f"names model {named}" in warning
    assert f"runs the promoted {before.name}/{before.version}" in warning


def test_the_promoted_model_named_in_the_file_gives_no_warning(
    service: InspectionService, good_images: Path
) -> None:
    active = _promoted(service)
    line = _start(service, good_images, s1=f"{active.name}/{active.version}")
    line.stop()
    assert line.statuses()[0].warnings == []


def test_a_model_that_does_not_exist_stops_the_start_naming_it(
    service: InspectionService, good_images: Path
) -> None:
    with pytest.raises(InputError, match=r"station s2: model nope/v1 is neither registered"):
        _start(service, good_images, s2="nope/v1")
    assert service.store.active_model("s2") is None
