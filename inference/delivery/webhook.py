"""The HTTP webhook sink: each result as a JSON POST, signed, with the result id as its
idempotency key; any 2xx answer means delivered.

Signature header (when a secret is set), as Stripe-style receivers check it:

    X-DefectLens-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

A receiver recomputes it over the raw body (`verify_signature`) and refuses old timestamps.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from defectlens import __version__
from defectlens.inference.delivery.sink import DeliveryFailed, DeliveryRejected, Sink

SIGNATURE_HEADER = "X-DefectLens-Signature"
RETRYABLE_4XX = frozenset({408, 409, 425, 429})
"""Client-error answers that say "not now" rather than "never": tried again as failures."""


def payload_body(payload: dict[str, Any]) -> bytes:
    """The bytes sent for `payload`: the same for the same payload, every time."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for `body` sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, now: float | None = None, tolerance_s: float = 300.0
) -> bool:
    """Whether `header` signs `body` with `secret` and was made within `tolerance_s` of
    `now` (for receivers, and the tests)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    moment = time.time() if now is None else now
    if abs(moment - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


class WebhookSink(Sink):
    """POSTs each payload to `url`; `secret` signs it; `timeout_s` bounds connect, write
    and the wait for the answer."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: str | None = None,
        timeout_s: float = 5.0,
        verify: bool | str = True,
    ) -> None:
        self.url = url
        self.secret = secret
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            verify=verify,
            headers={"User-Agent": f"defectlens/{__version__}"},
            follow_redirects=False,
        )

    def send(self, payload: dict[str, Any], result_id: str) -> None:
        body = payload_body(payload)
        headers = {"Content-Type": "application/json", "Idempotency-Key": result_id}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body, int(time.time()))
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise DeliveryFailed(
                f"webhook {self.url}: {type(error).__name__}: {error or 'no answer'}"
            ) from error
        if response.is_success:
            return
        detail = f"webhook {self.url} answered {response.status_code}: {response.text[:300]!r}"
        if 400 <= response.status_code < 500 and response.status_code not in RETRYABLE_4XX:
            raise DeliveryRejected(detail)
        raise DeliveryFailed(detail)

    def close(self) -> None:
        self.client.close()
