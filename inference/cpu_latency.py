"""Keep idle CPUs quick to wake while the service runs: Linux's CPU latency QoS.

A line sends one part, waits for the answer, and sends the next: between parts the cores
are idle, and an idle core sleeps. Every step of a part that wakes a thread (the socket read,
the hand-off to an inspection thread, ONNX Runtime's pool thread at the start of each model
run, the answer back) then waits for a sleeping core to come back, and on a virtual machine
that core may have been lent to another guest in the meantime, with its caches refilled by
someone else. Asking the kernel for a wake-up latency of 0 keeps idle cores polling instead
(what `tuned`'s latency-performance profile does): the next part starts on awake cores. The
price is power, and on a virtual machine host CPU time, while the cores are idle.

The request is held by keeping `/dev/cpu_dma_latency` open with the value written to it; the
kernel drops it when the file is closed, which includes the process dying, so a crashed
service never leaves the machine tuned.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from defectlens.errors import InputError

log = logging.getLogger(__name__)

DEVICE = Path("/dev/cpu_dma_latency")
"""The kernel's CPU latency QoS interface: a request lives as long as its open file."""

MAX_US = 2_000_000_000
"""The kernel's own default, "no constraint"; the value is a signed 32-bit integer."""


@contextmanager
def cpu_wake_latency(microseconds: int | None, setting: str) -> Iterator[None]:
    """Hold a CPU wake-up latency limit of `microseconds` for the block (None: do nothing).

    `setting` names where the value came from in the error raised when the machine refuses
    the request (no such device, or no permission to write it)."""
    if microseconds is None:
        yield
        return
    if not 0 <= microseconds <= MAX_US:
        raise InputError(f"{setting}={microseconds}: expected 0 to {MAX_US} microseconds")
    try:
        handle = os.open(DEVICE, os.O_WRONLY)
    except OSError as exc:
        raise InputError(
            f"{setting}={microseconds}: cannot open {DEVICE} ({exc.strerror or exc}); the "
            "CPU latency request needs Linux and write access to that device (root, or a "
            "udev rule for the service's user). Unset it to leave the CPUs' power "
            "management alone"
        ) from exc
    try:
        os.write(handle, struct.pack("=i", microseconds))
        log.info("holding idle CPUs to a %d us wake-up latency (%s)", microseconds, DEVICE)
        yield
    finally:
        os.close(handle)


def current_limit() -> int | None:
    """The machine's CPU wake-up latency limit in microseconds, all requests together (the
    kernel's default, `MAX_US`, when nobody asks for one); None where it cannot be read."""
    try:
        handle = os.open(DEVICE, os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(handle, 4)
    finally:
        os.close(handle)
    return struct.unpack("=i", data)[0] if len(data) == 4 else None
