"""Stations as a plant configures them: `stations.yaml`, checked at start.

A wrong field is named with its file and line (yaml's marks), as an `InputError` (exit 2).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from defectlens.errors import InputError
from defectlens.inference.service.inspection import STATION_ID_PATTERN
from defectlens.prediction import Verdict

MODBUS_BLOCK = 16
"""Holding registers each station takes in the Modbus map (docs/plc.md)."""


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class HotFolderSource(_Config):
    """Files written into a folder (a camera, a grabber, FTP); each complete file is a part."""

    kind: Literal["hot_folder"]
    path: Path
    serial_pattern: str | None = None
    """A regular expression with a group `serial`, searched in the file name (default: the
    file name without its extension, or `serial` from a sidecar `<name>.json`)."""
    stable_checks: int = Field(default=2, ge=1)
    """A file is complete when its size and modification time stayed the same over this many
    polls (files named `*.part`, `*.tmp`, `*.filepart` or `.*` are never picked up:
    rename-on-complete writers are taken at once)."""
    poll_s: float = Field(default=0.2, gt=0)

    @field_validator("serial_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            compiled = re.compile(value)
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from None
        if "serial" not in compiled.groupindex:
            raise ValueError("the pattern needs a named group: (?P<serial>...)")
        return value


class SimulatedCameraSource(_Config):
    """Replays a folder of images: at `rate_hz`, or one frame per trigger (PLC)."""

    kind: Literal["simulated"]
    folder: Path
    rate_hz: float | None = Field(default=None, gt=0, le=1000)


class CameraSource(_Config):
    """An OpenCV `VideoCapture`: a device index, a video file or an RTSP URL."""

    kind: Literal["camera"]
    device: int | str
    rate_hz: float | None = Field(default=None, gt=0, le=1000)
    exposure: float | None = None
    """`CAP_PROP_EXPOSURE`, where the backend supports it (a warning where it does not)."""
    gain: float | None = None
    width: int | None = Field(default=None, gt=0)
    height: int | None = Field(default=None, gt=0)
    loop: bool = True
    """A video file starts again at its end (for commissioning and tests)."""


SourceConfig = Annotated[
    HotFolderSource | SimulatedCameraSource | CameraSource, Field(discriminator="kind")
]


class ModbusLink(_Config):
    """The station's block of holding registers on the service's Modbus TCP server."""

    protocol: Literal["modbus"] = "modbus"
    address: int = Field(ge=0, le=65535 - MODBUS_BLOCK)
    """First register of the station's block of 16 (docs/plc.md)."""

    @property
    def label(self) -> str:
        return f"@{self.address}"


class OpcUaLink(_Config):
    """The station's handshake variables and `Inspect` method on the service's OPC UA server
    (`DEFECTLENS_OPCUA_ENDPOINT`, with its login and certificate settings: docs/plc.md)."""

    protocol: Literal["opcua"]

    @property
    def label(self) -> str:
        return "opcua"


def _protocol(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("protocol", "modbus"))
    return str(getattr(value, "protocol", "modbus"))


PlcLink = Annotated[
    Annotated[ModbusLink, Tag("modbus")] | Annotated[OpcUaLink, Tag("opcua")],
    Discriminator(_protocol),
]


class StationConfig(_Config):
    id: str = Field(pattern=STATION_ID_PATTERN)
    line: str | None = Field(default=None, max_length=64)
    product: str | None = Field(default=None, max_length=128)
    model: str | None = Field(default=None, pattern=r"^[^/]+/[^/]+$")
    """`name/version` the station is meant to run, checked at start against the station's
    promoted model (`model_check.py`)."""
    source: SourceConfig
    plc: PlcLink | None = None
    deadline_ms: float = Field(default=200.0, gt=0)
    """A PLC-triggered part not answered within this gets the fail-safe verdict."""
    fail_safe: Verdict = "NG"

    @model_validator(mode="after")
    def _triggered(self) -> StationConfig:
        # A camera without rate_hz or plc takes a frame only on `POST /v1/stations/{id}/trigger`.
        if self.source.kind == "hot_folder" and self.plc is not None:
            raise ValueError("a hot folder is not triggered: remove plc, or use a camera source")
        return self


class ModbusServerConfig(_Config):
    host: str = "127.0.0.1"
    port: int = Field(default=5020, ge=0, le=65535)
    """0 picks a free port (tests)."""
    device_id: int = Field(default=1, ge=0, le=247)


class LineConfig(_Config):
    """The whole file: the stations and the PLC servers they share."""

    stations: list[StationConfig] = Field(min_length=1)
    modbus: ModbusServerConfig = Field(default_factory=ModbusServerConfig)
    parts_in_parallel: int | None = Field(default=None, ge=1, le=64)
    """Triggered parts inspected at once, over all stations (default: the machine's cores);
    more wait their turn in trigger order. docs/plc.md, "Benchmark", says why."""

    @model_validator(mode="after")
    def _distinct(self) -> LineConfig:
        seen: set[str] = set()
        blocks: dict[int, str] = {}
        for station in self.stations:
            if station.id in seen:
                raise ValueError(f"station {station.id!r} is configured twice")
            seen.add(station.id)
            if isinstance(station.plc, ModbusLink):
                for other_address, other in blocks.items():
                    if abs(other_address - station.plc.address) < MODBUS_BLOCK:
                        raise ValueError(
                            f"stations {other} and {station.id}: Modbus blocks overlap "
                            f"(addresses {other_address} and {station.plc.address}; each "
                            f"takes {MODBUS_BLOCK} registers)"
                        )
                blocks[station.plc.address] = station.id
        return self

    def station(self, station_id: str) -> StationConfig:
        for station in self.stations:
            if station.id == station_id:
                return station
        raise InputError(f"station {station_id!r} is not in the stations file")


def load_stations(path: Path) -> LineConfig:
    """Read and check a stations file; `InputError` naming the file, line and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"{path}: cannot read the stations file: {error.strerror}") from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise InputError(f"{where}: not valid YAML: {getattr(error, 'problem', error)}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}:1: expected a mapping with a `stations:` list")
    # Paths in the file are relative to the file's folder.
    for station in data.get("stations") or []:
        source = station.get("source") if isinstance(station, dict) else None
        if isinstance(source, dict):
            for key in ("path", "folder"):
                if isinstance(source.get(key), str):
                    source[key] = str((path.parent / source[key]).resolve())
    try:
        return LineConfig.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        loc = tuple(first["loc"])
        line = _line_of(root, loc)
        field = ".".join(str(p) for p in loc) or "(file)"
        raise InputError(f"{path}:{line}: {field}: {first['msg']}") from None


def _line_of(node: Any, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the deepest YAML node `loc` reaches (union tags are skipped)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if k.value == part), None)
            if found is None:
                continue  # a discriminated union's tag, or a missing field: stay on the parent
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line
