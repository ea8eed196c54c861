"""The PLC's side of the Modbus handshake (docs/plc.md) on one station's block, with a
pymodbus client: what the demo and the line benchmark act as, and a reference for the
plant's PLC programmer."""

from __future__ import annotations

import time

from pymodbus.client import ModbusTcpClient

from defectlens.inference.line import modbus
from defectlens.inference.line.stations import MODBUS_BLOCK


class ModbusPlc:
    """Trigger parts on the station whose block starts at `base`, polling STATUS every
    `poll_s` (a PLC's scan) and giving up on an answer after `give_up_s` (a PLC diverts the
    part)."""

    def __init__(
        self,
        client: ModbusTcpClient,
        base: int,
        poll_s: float = 0.002,
        give_up_s: float = 5.0,
        device_id: int = 1,
    ) -> None:
        self.client, self.base, self.poll_s, self.give_up_s = client, base, poll_s, give_up_s
        self.device_id = device_id

    def read(self) -> list[int]:
        answer = self.client.read_holding_registers(
            self.base, count=MODBUS_BLOCK, device_id=self.device_id
        )
        if answer.isError():
            raise RuntimeError(f"reading registers {self.base}: {answer}")
        return list(answer.registers)

    def write(self, offset: int, values: list[int]) -> None:
        done = self.client.write_registers(self.base + offset, values, device_id=self.device_id)
        if done.isError():
            raise RuntimeError(f"writing register {self.base + offset}: {done}")

    def wait(self, bit: int) -> list[int] | None:
        """The block once STATUS has `bit`; None when it did not come in time."""
        end = time.monotonic() + self.give_up_s
        while True:
            block = self.read()
            if block[modbus.STATUS] & bit:
                return block
            if time.monotonic() >= end:
                return None
            time.sleep(self.poll_s)

    def cycle(self, serial: str, counter: int) -> tuple[int, list[int] | None, float]:
        """Trigger one part: (the station's COUNTER after it, the answer block or None when
        no answer came, trigger-to-answer ms). `counter` is the COUNTER before the trigger."""
        if self.wait(modbus.READY) is None:
            raise RuntimeError(f"registers {self.base}: the station never became READY")
        self.write(modbus.SERIAL, modbus.encode_serial(serial))
        triggered = time.perf_counter()
        self.write(modbus.TRIGGER, [1])
        answer = self.wait(modbus.RESULT_READY)
        elapsed_ms = (time.perf_counter() - triggered) * 1000
        if answer is None:
            return counter, None, elapsed_ms
        self.write(modbus.ACK, [1])
        if answer[modbus.COUNTER] != (counter + 1) % 65536:
            return answer[modbus.COUNTER], None, elapsed_ms  # not this trigger's answer
        return answer[modbus.COUNTER], answer, elapsed_ms
