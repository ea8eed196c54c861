"""The inspection service's settings: the workspace `Settings` plus limits and the listener.

Environment variables `DEFECTLENS_*` (e.g. `DEFECTLENS_MAX_UPLOAD_BYTES`) or `defectlens.yaml`.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from defectlens import DECODE_PIXEL_CAP
from defectlens.logs import LogFormat
from defectlens.settings import Settings


class ServiceSettings(Settings):
    """What `defectlens serve` and `create_app` need beyond the workspace settings."""

    host: str = "127.0.0.1"
    """Listen address; 0.0.0.0 to accept calls from the plant network."""
    port: int = Field(default=8000, ge=1, le=65535)
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    """Largest accepted request body for an image (413 above it)."""
    max_pixels: int = Field(default=40_000_000, gt=0, le=DECODE_PIXEL_CAP)
    """Largest accepted image in pixels, read from the header before decoding (413); at most
    the 268 million pixels defectlens ever decodes."""
    request_timeout_s: float = Field(default=10.0, gt=0)
    """An inspection that takes longer is answered 504 and nothing is stored."""
    onnx_spinning: bool = True
    """ONNX Runtime's threads busy-wait between the operators of a run (the lowest model
    time) and sleep when the run ends, leaving the cores to the HTTP and store work. False
    lets them sleep between operators too, at the cost of more model time per part."""
    onnx_split_overlapping: bool = True
    """A part inspected while another part is in progress runs on one thread (a second
    session of the model): a part inspected alone gets all `threads`, parts in flight
    together take a core each instead of contending for the same ones. About 10% more
    parts/s at 4 clients and 20% at 16 on 2 cores (docs/service-performance.md), for a
    second copy of each served model in memory."""
    max_concurrent_inspections: int = Field(default=4, ge=1)
    """Inspections running at once; more requests wait their turn (within the timeout).
    A few in parallel keep the cores busy; many would only slow each other down."""
    max_queued_inspections: int = Field(default=32, ge=0)
    """Parts allowed to wait for an inspection thread; beyond them a part is answered 503
    with Retry-After at once, instead of queueing past the line's deadline."""
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    """Largest request body of every route other than inspect and the label upload (413
    before it is read)."""
    max_archive_bytes: int = Field(default=2 * 1024**3, gt=0)
    """Largest zip of a labelled folder uploaded to `POST /v1/labels/import/upload` (413);
    streamed to a temporary file, never held in memory."""
    database_timeout_s: float = Field(default=5.0, gt=0)
    """Connect, statement and lock timeout of the database (SQLite: its busy timeout); below
    `request_timeout_s`, so a slow database answers 503 rather than holding a part."""
    min_free_disk_bytes: int = Field(default=512 * 1024 * 1024, ge=0)
    """Below this much free disk under the images folder, parts whose image must be kept
    are refused (507) and /readyz reports it."""
    instance_id: str = Field(default="default", min_length=1, max_length=64)
    """This service instance on a shared database: retention touches only the images it
    wrote. Give each instance sharing a database its own id, and keep it: not the host name
    by default, which containers change at every start."""
    log_format: LogFormat = "json"
    """`json`: one JSON object a line with the request id (for log collectors); `text` for a
    person at a terminal."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """INFO logs one line per request, each model swap and each background pass's work."""
    auth_disabled_on_network: bool = False
    """With `auth_disabled`, also serve on an address other than loopback: the second
    confirmation that the plant network may call every route without a key."""
    keep_ok_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    """Share of OK images kept on disk (every NG image is kept)."""
    auth_disabled: bool = False
    """Lab use only: every caller is admin without a key. Logged loudly, shown on /readyz."""
    key_cache_s: float = Field(default=5.0, ge=0.0)
    """How long a verified API key is trusted without asking the database again; a revoked
    key stops working at most this long after `keys revoke`."""
    session_hours: float = Field(default=12.0, gt=0.0, le=24.0 * 30)
    """How long a browser stays signed in after pasting its API key on /signin (the pages)."""
    session_secret: SecretStr | None = None
    """Signs browser session cookies; give every instance behind one address the same one.
    Default: a random secret kept in the workspace (`web-session.key`), made on first use."""
    local_worker: bool = True
    """On SQLite, the service runs the workspace's training worker (`defectlens worker`) as
    a process of its own, started when a job is queued; false: run `defectlens worker`
    yourself. On PostgreSQL workers are always started by hand, on any machine."""
    shadow_queue_size: int = Field(default=16, ge=1, le=10_000)
    """Parts waiting for a shadow model (`shadow.py`); a part that finds it full is skipped
    and counted, never waited for."""
    deployment_poll_s: float = Field(default=5.0, ge=0.0)
    """How often the service checks the store for promotions made elsewhere (the CLI, another
    instance) and hot-swaps to them; 0 turns the check off."""
    retention_max_age_days: float | None = Field(default=None, ge=0.0)
    """Delete retained, unlabeled images older than this (None: keep by age)."""
    retention_max_bytes: int | None = Field(default=None, ge=0)
    """Delete the oldest retained, unlabeled images beyond this total (None: no budget)."""
    retention_interval_s: float = Field(default=3600.0, gt=0.0)
    """How often the retention policy runs while the service is up."""
    webhook_url: str | None = None
    """Results to the MES: POST each result (JSON) here; None: no webhook sink."""
    webhook_secret: SecretStr | None = None
    """Signs each webhook body (header X-DefectLens-Signature: t=...,v1=HMAC-SHA256)."""
    webhook_timeout_s: float = Field(default=5.0, gt=0.0)
    """Connect, send and answer timeout of one webhook POST."""
    mqtt_url: str | None = None
    """Results to an MQTT broker: mqtt://host:1883 or mqtts://host:8883 (TLS); None: no
    MQTT sink."""
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_ca_file: Path | None = None
    """CA certificate(s) the broker's TLS certificate must chain to (default: the system's)."""
    mqtt_client_id: str | None = None
    """The MQTT client id (default: defectlens-<instance id>)."""
    opcua_endpoint: str | None = None
    """Results on an OPC UA server inside the service, e.g. opc.tcp://0.0.0.0:4840/defectlens/
    (per station the last result and OK/NG counts); None: no OPC UA sink."""
    opcua_username: str | None = None
    """With `opcua_password`: clients must log in with these; anonymous clients are refused."""
    opcua_password: SecretStr | None = None
    opcua_certificate: Path | None = None
    """With `opcua_private_key`: the server's certificate; only Basic256Sha256 signed and
    encrypted endpoints are offered (passwords travel encrypted)."""
    opcua_private_key: Path | None = None
    station_sinks: dict[str, list[Literal["webhook", "mqtt", "opcua"]]] = Field(
        default_factory=dict
    )
    """Per station, the sinks its results go to, e.g. {"S1": ["webhook"], "S2": ["mqtt",
    "opcua"]} (an empty list: none); a station not named goes to every configured sink."""
    delivery_max_attempts: int = Field(default=100, ge=1)
    """A result a sink failed to take this many times becomes a dead letter (listed by
    `defectlens deliveries list`, re-sent by `deliveries retry`)."""
    delivery_max_rejections: int = Field(default=3, ge=1)
    """A result the receiver rejects (HTTP 4xx) is a dead letter after this many tries, so
    it holds its station's later results back no longer."""
    delivery_backoff_s: float = Field(default=1.0, gt=0.0)
    """The wait after a failed delivery, doubled with each further failure (with jitter)..."""
    delivery_max_backoff_s: float = Field(default=30.0, gt=0.0)
    """...up to this: the longest a sink that came back waits for its first try."""
    delivery_poll_s: float = Field(default=0.5, gt=0.0)
    """How often each sink looks for results due again (new results wake it at once)."""
    delivery_lease_s: float = Field(default=60.0, gt=0.0)
    """How long a sink's claimed results are left to it: after a crash they are sent again
    once this has run out (at least once); longer than a batch of sends takes."""
    sink_down_ready_s: float = Field(default=300.0, gt=0.0)
    """A sink failing for longer than this makes /readyz 503, naming the sink."""
    stations_file: Path | None = None
    """The line side's stations (sources, PLC links, deadlines: docs/plc.md); default
    `<home>/stations.yaml` when that file exists."""

    @model_validator(mode="after")
    def _check(self) -> ServiceSettings:
        if self.database_timeout_s >= self.request_timeout_s:
            raise ValueError(
                f"database_timeout_s ({self.database_timeout_s:g}) must be below "
                f"request_timeout_s ({self.request_timeout_s:g})"
            )
        if self.auth_disabled and not self.auth_disabled_on_network and not is_loopback(self.host):
            raise ValueError(
                f"auth_disabled is set and host {self.host!r} is not a loopback address: "
                "every caller on the network would be admin. Serve on 127.0.0.1, or also set "
                "DEFECTLENS_AUTH_DISABLED_ON_NETWORK=true if that is really meant"
            )
        configured = {
            "webhook": ("DEFECTLENS_WEBHOOK_URL", self.webhook_url),
            "mqtt": ("DEFECTLENS_MQTT_URL", self.mqtt_url),
            "opcua": ("DEFECTLENS_OPCUA_ENDPOINT", self.opcua_endpoint),
        }
        for station, sinks in self.station_sinks.items():
            for sink in sinks:
                variable, value = configured[sink]
                if not value:
                    raise ValueError(
                        f"station_sinks sends station {station!r} to sink {sink!r}, but "
                        f"{variable} is not set: set it, or drop {sink!r} from the station"
                    )
        return self


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts calls from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
