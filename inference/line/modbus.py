"""The PLC handshake over Modbus TCP: a pymodbus server inside the service, one block of 16
holding registers per station (the map is in docs/plc.md).

The PLC writes the serial and sets TRIGGER; the service sets BUSY, grabs a frame from the
station's source, inspects it and answers within the station's deadline: VERDICT, DEFECT
CODE, SCORE, ELAPSED, the part COUNTER, then RESULT READY. The PLC reads them and writes
ACK; the service clears the answer and is READY again. The server runs its own event loop
in a thread; answers come back to it from the station threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from defectlens.errors import InputError
from defectlens.inference.line.handshake import plc_answer
from defectlens.inference.line.parts import LineAnswer
from defectlens.inference.line.runner import StationRunner
from defectlens.inference.line.stations import MODBUS_BLOCK, ModbusLink, ModbusServerConfig

log = logging.getLogger(__name__)

# Register offsets inside a station's block (docs/plc.md).
TRIGGER, STATUS, VERDICT, DEFECT_CODE, COUNTER, ACK, SCORE, ELAPSED_MS = range(8)
SERIAL, SERIAL_REGISTERS = 8, 8  # 16 ASCII characters, two per register, high byte first
# STATUS bits
READY, BUSY, RESULT_READY, ERROR, FAIL_SAFE = 1, 2, 4, 8, 16
# VERDICT values (DEFECT CODE values: `handshake.py`)
NO_VERDICT, OK, NG = 0, 1, 2
_WRITE_CODES = {6, 16, 23}


def encode_serial(serial: str) -> list[int]:
    """A serial as the PLC writes it: ASCII, two characters a register, NUL-padded."""
    raw = serial.encode("ascii", "replace")[: SERIAL_REGISTERS * 2].ljust(
        SERIAL_REGISTERS * 2, b"\0"
    )
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, len(raw), 2)]


def decode_serial(registers: list[int]) -> str | None:
    raw = b"".join(bytes([(r >> 8) & 0xFF, r & 0xFF]) for r in registers)
    text = raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()
    return text or None


class _StationBlock:
    """A station's registers and its side of the handshake."""

    def __init__(self, runner: StationRunner, base: int) -> None:
        self.runner = runner
        self.base = base
        self.counter = 0
        self.triggered_at = 0.0


class ModbusPlcServer:
    """The Modbus TCP server the line's PLCs talk to, for every station with `plc:`."""

    def __init__(self, config: ModbusServerConfig, runners: list[StationRunner]) -> None:
        self.config = config
        self.blocks = [
            _StationBlock(r, r.config.plc.address)
            for r in runners
            if isinstance(r.config.plc, ModbusLink)
        ]
        size = max(b.base for b in self.blocks) + MODBUS_BLOCK
        self._registers: list[int] | None = None
        """The server's holding registers (pymodbus' own list, captured at the first access;
        touched only on the server's event loop)."""
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._server: ModbusTcpServer | None = None
        self._failure: Exception | None = None
        self.port = config.port
        device = SimDevice(
            id=config.device_id,
            simdata=[SimData(0, count=size, values=0, datatype=DataType.REGISTERS)],
            action=self._access,
        )
        self._device = device
        self._thread = threading.Thread(target=self._serve, name="modbus-plc", daemon=True)
        for block in self.blocks:
            block.runner.plc = f"modbus {config.host}:{config.port} registers {block.base}+16"

    def start(self) -> None:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the Modbus server did not start within 10 s")
        if self._failure is not None:
            raise InputError(
                f"cannot serve Modbus TCP on {self.config.host}:{self.config.port}: {self._failure}"
            ) from self._failure

    def stop(self) -> None:
        if self._failure is not None:
            return
        if self._server is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._listen())
        except Exception as error:
            self._failure = error
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    async def _listen(self) -> None:
        self._server = ModbusTcpServer(self._device, address=(self.config.host, self.config.port))
        await self._server.serve_forever(background=True)
        transport = getattr(self._server, "transport", None)
        if self.config.port == 0 and transport is not None:
            self.port = transport.sockets[0].getsockname()[1]

    async def _access(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Every request passes here before pymodbus applies it: keep the register list,
        refuse a PLC write to the service's registers, and act on TRIGGER and ACK after the
        write lands (`call_soon`)."""
        if self._registers is None:
            self._registers = registers
            for block in self.blocks:
                registers[block.base + STATUS] = READY if block.runner.connected else ERROR
        if function_code not in _WRITE_CODES or values is None:
            self._refresh_status()
            return None
        first, last = address, address + count
        for block in self.blocks:
            if first < block.base + MODBUS_BLOCK and last > block.base:
                owned = {
                    block.base + o
                    for o in (STATUS, VERDICT, DEFECT_CODE, COUNTER, SCORE, ELAPSED_MS)
                }
                if any(first <= r < last for r in owned):
                    return ExcCodes.ILLEGAL_ADDRESS  # the service's registers are read-only
                asyncio.get_running_loop().call_soon(self._written, block)
        return None

    def _refresh_status(self) -> None:
        """The ERROR bit follows the station's source between parts."""
        registers = self._registers
        assert registers is not None
        for block in self.blocks:
            status = registers[block.base + STATUS]
            if status & (BUSY | RESULT_READY):
                continue
            connected = block.runner.connected
            registers[block.base + STATUS] = READY if connected else READY | ERROR

    def _written(self, block: _StationBlock) -> None:
        registers = self._registers
        assert registers is not None
        base = block.base
        status = registers[base + STATUS]
        if registers[base + ACK] and status & RESULT_READY:
            for offset in (TRIGGER, ACK, VERDICT, DEFECT_CODE, SCORE, ELAPSED_MS):
                registers[base + offset] = 0
            registers[base + STATUS] = READY
            return
        if registers[base + TRIGGER] and not status & (BUSY | RESULT_READY):
            serial = decode_serial(registers[base + SERIAL : base + SERIAL + SERIAL_REGISTERS])
            registers[base + STATUS] = BUSY
            block.triggered_at = time.perf_counter()
            future = block.runner.trigger(serial)
            future.add_done_callback(
                lambda done: self._loop.call_soon_threadsafe(self._answer, block, done)
            )

    def _answer(self, block: _StationBlock, done: concurrent.futures.Future[LineAnswer]) -> None:
        registers = self._registers
        assert registers is not None
        base = block.base
        block.counter = (block.counter + 1) & 0xFFFF
        elapsed = int((time.perf_counter() - block.triggered_at) * 1000)
        answer = plc_answer(block.runner.config.id, done, block.runner.service.registry)
        status = (
            RESULT_READY | (ERROR if answer.error else 0) | (FAIL_SAFE if answer.fail_safe else 0)
        )
        registers[base + VERDICT] = {None: NO_VERDICT, "OK": OK, "NG": NG}[answer.verdict]
        registers[base + DEFECT_CODE] = answer.defect_code
        registers[base + SCORE] = max(0, min(65535, round(answer.score * 1000)))
        registers[base + ELAPSED_MS] = min(65535, elapsed)
        registers[base + COUNTER] = block.counter
        registers[base + STATUS] = status
