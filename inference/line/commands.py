"""`defectlens stations list|show ID`: the stations file, and what the running service says
each station is doing (`<home>/run/<instance>.stations.json`, written every 2 s)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from defectlens.errors import InputError

STALE_S = 10.0


def add_station_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    stations = commands.add_parser(
        "stations",
        help="the line side: configured stations, their sources, PLC links and state",
        description="Reads DEFECTLENS_STATIONS_FILE (default <home>/stations.yaml) and what "
        "each running service reports about its stations.",
    )
    actions = stations.add_subparsers(dest="stations_command", metavar="ACTION", required=True)
    actions.add_parser("list", help="one line per station").set_defaults(handler=_list)
    show = actions.add_parser("show", help="a station's configuration and state")
    show.add_argument("station", metavar="ID")
    show.set_defaults(handler=_show)


def _config_and_states() -> tuple[Any, dict[str, dict[str, Any]]]:
    from defectlens.inference.line.runner import stations_file
    from defectlens.inference.line.stations import load_stations
    from defectlens.inference.service import ServiceSettings

    settings = ServiceSettings()
    path = stations_file(settings)
    if path is None:
        raise InputError(
            f"no stations file: set DEFECTLENS_STATIONS_FILE or write {settings.home}/stations.yaml"
        )
    config = load_stations(path)
    states: dict[str, dict[str, Any]] = {}
    now = datetime.now(UTC)
    for snapshot in sorted((settings.home / "run").glob("*.stations.json")):
        try:
            body = json.loads(snapshot.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        age = (now - datetime.fromisoformat(body["updated_at"])).total_seconds()
        if age <= STALE_S:
            states.update({s["station"]: s for s in body["stations"]})
    return config, states


def _list(args: argparse.Namespace) -> int:
    config, states = _config_and_states()
    print(
        f"{'station':<16} {'source':<10} {'plc':<6} {'connected':<9} {'parts/min':>9} "
        f"{'NG rate':>7}  {'last part':<19}  last error"
    )
    for station in config.stations:
        state = states.get(station.id)
        plc = station.plc.label if station.plc else "-"
        if state is None:
            print(f"{station.id:<16} {station.source.kind:<10} {plc:<6} (no running service)")
            continue
        ng = f"{state['ng_rate']:.1%}" if state["ng_rate"] is not None else "-"
        last = (state["last_part_at"] or "-")[:19]
        print(
            f"{station.id:<16} {station.source.kind:<10} {plc:<6} "
            f"{'yes' if state['connected'] else 'NO':<9} {state['parts_per_min']:>9.0f} "
            f"{ng:>7}  {last:<19}  {state['last_error'] or ''}".rstrip()
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    config, states = _config_and_states()
    station = config.station(args.station)
    print(json.dumps(station.model_dump(mode="json"), indent=2))
    state = states.get(station.id)
    print("state:", json.dumps(state, indent=2) if state else "no running service reports it")
    return 0


def check_stations_file() -> Path | None:
    """For `defectlens serve`: load and check the stations file before the service starts
    (an `InputError` naming the file and line: exit 2)."""
    from defectlens.inference.line.runner import stations_file
    from defectlens.inference.line.stations import load_stations
    from defectlens.inference.service import ServiceSettings

    path = stations_file(ServiceSettings())
    if path is not None:
        load_stations(path)
    return path
