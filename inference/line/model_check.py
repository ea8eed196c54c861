"""The model a station is meant to run, as the stations file names it (`model: name/version`),
checked at start against the station's promoted deployment (docs/plc.md, "The model a
station runs").

The file deploys a station's first model: a station with nothing promoted gets the named
version promoted (actor `stations-file`, in the audit log). After that, promotion is the one
way to change a station's model (loaded and warmed before it takes over, audited, rolled
back in one step), so a file that names another version does not stop the line or swap the
model behind QA's back: the station keeps its promoted model and carries a warning on
`GET /v1/stations`, `defectlens stations show` and in the log until one of them is changed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from defectlens.errors import InputError
from defectlens.inference.line.stations import StationConfig
from defectlens.inference.service import deployments
from defectlens.inference.service.core import InspectionService

log = logging.getLogger(__name__)

ACTOR = "stations-file"


def check_station_model(
    service: InspectionService, station: StationConfig, source: Path
) -> str | None:
    """Promote the station's named model if it has none; the warning to show when its
    promoted model is another (None when they agree or the file names none). `InputError`
    when the file names a version that is neither registered nor in the models folder."""
    if station.model is None:
        return None
    name, version = station.model.split("/", 1)
    active = service.store.active_model(station.id)
    if active is not None:
        if (active.name, active.version) == (name, version):
            return None
        warning = (
            f"the stations file names model {station.model}, but the station runs the promoted "
            f"{active.name}/{active.version}: promote {station.model} (`defectlens models "
            f"promote`) or change model: in {source}"
        )
        log.warning("station %s: %s", station.id, warning, extra={"station": station.id})
        return warning
    registered = [
        v for v in service.store.list_model_versions() if (v.name, v.version) == (name, version)
    ]
    folder = service.settings.models_dir / name / version
    if not registered and not (folder / "model.json").is_file():
        raise InputError(
            f"{source}: station {station.id}: model {station.model} is neither registered nor "
            f"in {folder}; train or copy it there, or remove model: from the station"
        )
    deployments.promote(
        service,
        station.id,
        ACTOR,
        model_version_id=registered[0].id if registered else None,
        model_dir=None if registered else folder,
    )
    log.info(
        "station %s: promoted %s, as the stations file names it",
        station.id,
        station.model,
        extra={"station": station.id},
    )
    return None
