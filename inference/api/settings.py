"""The inspection service's settings: the workspace `Settings` plus limits and the listener.

Environment variables `DEFECTLENS_*` (e.g. `DEFECTLENS_MAX_UPLOAD_BYTES`) or `defectlens.yaml`.
"""

from __future__ import annotations

from pydantic import Field

from defectlens.settings import Settings


class ServiceSettings(Settings):
    """What `defectlens serve` and `create_app` need beyond the workspace settings."""

    host: str = "127.0.0.1"
    """Listen address; 0.0.0.0 to accept calls from the plant network."""
    port: int = Field(default=8000, ge=1, le=65535)
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    """Largest accepted request body for an image (413 above it)."""
    max_pixels: int = Field(default=40_000_000, gt=0)
    """Largest accepted image in pixels, read from the header before decoding (413)."""
    request_timeout_s: float = Field(default=10.0, gt=0)
    """An inspection that takes longer is answered 504 and nothing is stored."""
    onnx_spinning: bool = True
    """ONNX Runtime's threads busy-wait between the operators of a run (the lowest model
    time) and sleep when the run ends, leaving the cores to the HTTP and store work. False
    lets them sleep between operators too, at the cost of more model time per part."""
    onnx_split_overlapping: bool = True
    """A part whose model run starts while another part's is in flight runs on one thread
    (a second session of the model): a part inspected alone gets all `threads`, parts in
    flight together take a core each instead of contending for the same ones. About 10%
    more parts/s at 4 clients and 20% at 16 on 2 cores (the README's paired load-test
    rounds), for a second copy of each served model in memory."""
    max_concurrent_inspections: int = Field(default=4, ge=1)
    """Inspections running at once; more requests wait their turn (within the timeout).
    A few in parallel keep the cores busy; many would only slow each other down."""
    keep_ok_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    """Share of OK images kept on disk (every NG image is kept)."""
    auth_disabled: bool = False
    """Lab use only: every caller is admin without a key. Logged loudly, shown on /readyz."""
    key_cache_s: float = Field(default=5.0, ge=0.0)
    """How long a verified API key is trusted without asking the database again; a revoked
    key stops working at most this long after `keys revoke`."""
    deployment_poll_s: float = Field(default=5.0, ge=0.0)
    """How often the service checks the store for promotions made elsewhere (the CLI, another
    instance) and hot-swaps to them; 0 turns the check off."""
    retention_max_age_days: float | None = Field(default=None, ge=0.0)
    """Delete retained, unlabeled images older than this (None: keep by age)."""
    retention_max_bytes: int | None = Field(default=None, ge=0)
    """Delete the oldest retained, unlabeled images beyond this total (None: no budget)."""
    retention_interval_s: float = Field(default=3600.0, gt=0.0)
    """How often the retention policy runs while the service is up."""
