"""What a PLC is told about a part, whichever protocol carries it (Modbus registers or OPC UA
variables): the verdict, the defect code, the fail-safe and error bits (docs/plc.md)."""

from __future__ import annotations

import concurrent.futures
import logging
from dataclasses import dataclass

from defectlens.inference.line.parts import LineAnswer
from defectlens.prediction import Verdict

log = logging.getLogger(__name__)

# DEFECT CODE values (the same on Modbus and OPC UA)
NO_DEFECT, DEFECT, CODE_DEADLINE, CODE_SOURCE, CODE_ERROR = 0, 1, 100, 101, 102
_FAIL_SAFE_CODES = {"deadline": CODE_DEADLINE, "source": CODE_SOURCE, "error": CODE_ERROR}


@dataclass(frozen=True)
class PlcAnswer:
    """One answered trigger, as the PLC reads it."""

    verdict: Verdict | None
    """None when nothing was stored (the service stopped, a bug): the ERROR bit is set."""
    defect_code: int
    fail_safe: bool
    score: float
    result_id: str | None

    @property
    def error(self) -> bool:
        return self.verdict is None


def plc_answer(station: str, done: concurrent.futures.Future[LineAnswer]) -> PlcAnswer:
    """The answer to a trigger whose future `done` has completed."""
    try:
        answer = done.result()
    except BaseException as error:  # no stored result: the PLC sees ERROR, no verdict
        log.error(
            "station %s: trigger not answered: %s", station, error, extra={"station": station}
        )
        return PlcAnswer(None, CODE_ERROR, False, 0.0, None)
    result = answer.result
    if answer.fail_safe is not None:
        code = _FAIL_SAFE_CODES[answer.fail_safe]
    else:
        code = DEFECT if result.defects else NO_DEFECT
    return PlcAnswer(
        result.verdict, code, answer.fail_safe is not None, result.score, result.result_id
    )
